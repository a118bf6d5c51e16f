"""DICOM decoding through pydicom: modality LUT, VOI LUT or window, MONOCHROME1, guardrail metadata."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from fl.formats import has_preamble, is_dicom_file, looks_like_raw_dicom  # noqa: F401 - sniffing lives there
from fl.radiograph import (
    WINDOW_FUNCTIONS,
    ImageReadError,
    Radiograph,
    apply_window,
    check_dimensions,
    detail,
    fail,
)

META_TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "PatientAge", "PatientSex", "PatientName", "PatientID",
             "AccessionNumber",
             "PhotometricInterpretation", "StudyDate", "SeriesDescription", "SOPInstanceUID",
             "Rows", "Columns", "BitsStored")
OPTIONAL_META_TAGS = ("ImageLaterality", "PatientOrientation")
DICOMDIR_UID = "1.2.840.10008.1.3.10"
# Derived window when the file has none: these percentiles of the modality values (robust to
# collimator edges and burned-in labels), from at most ~250k samples.
DERIVED_PERCENTILES = (0.5, 99.5)
_EXPORT = "Export the image again from the PACS or the X-ray system."


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _meta(ds) -> dict[str, str]:
    meta = {tag: _text(ds.get(tag)) for tag in META_TAGS}
    meta.update({tag: _text(ds.get(tag)) for tag in OPTIONAL_META_TAGS if tag in ds})
    return meta


def _number(value, default: float | None) -> float | None:
    """First value of a DS/IS element as a finite float, else ``default``."""
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _file_window(ds) -> tuple[float, float] | None:
    center, width = _number(ds.get("WindowCenter"), None), _number(ds.get("WindowWidth"), None)
    if center is None or width is None or width <= 0:
        return None
    return center, width


def _derived_window(raw: np.ndarray, stored: np.ndarray, padding) -> tuple[float, float]:
    step = max(1, int(math.sqrt(raw.size / 250_000)))
    sample = raw[::step, ::step]
    pad = _number(padding, None)
    if pad is not None:
        keep = stored[::step, ::step] != pad
        if keep.any():
            sample = sample[keep]
    lo, hi = (float(v) for v in np.percentile(sample, DERIVED_PERCENTILES))
    return (lo + hi) / 2.0, max(hi - lo, 1.0)


def _read_dataset(data: bytes, name: str, source: str):
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble(data))
    except Exception as exc:
        raise fail(name, f"it looks like a DICOM file but its header is damaged ({detail(exc)})", _EXPORT,
                   source=source) from exc
    if not getattr(ds.file_meta, "TransferSyntaxUID", None):
        implicit, little = getattr(ds, "original_encoding", (False, True))
        if little is False:
            raise fail(name, "it is a big-endian DICOM file without file meta information",
                       "Export it again from the PACS as a standard DICOM file.", source=source)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def _check_image(ds, name: str, source: str) -> None:
    sop_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
    if sop_class == DICOMDIR_UID or "DirectoryRecordSequence" in ds:
        raise fail(name, "this is a DICOMDIR, the index of a DICOM disc, not an image",
                   "Open the image files it lists (usually in the DICOM folder beside it).", source=source)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            what = "it stores floating-point data (a derived or parametric map), not a radiograph"
        else:
            kind = pydicom.uid.UID(sop_class).name if sop_class else ""
            if "Image Storage" in kind:
                raise fail(name, f"the DICOM file ends before its image data (it is a '{kind}' object without "
                                 "pixel data), so it is incomplete, e.g. cut short while copying", _EXPORT,
                           source=source)
            kind = f"; it is a '{kind}' object" if kind and kind != sop_class else ""
            what = f"the DICOM file contains no image (no pixel data){kind}. It may be a report or another " \
                   "non-image object, or an incomplete copy"
        raise fail(name, what, "Open the DICOM file of the radiograph itself.", source=source)
    frames = int(_number(ds.get("NumberOfFrames"), 1) or 1)
    if frames > 1:
        raise fail(name, f"the DICOM file holds {frames} images (a multi-frame object such as a cine loop or a "
                         "tomosynthesis series), and FedXray analyses one radiograph at a time",
                   "Export the single frontal chest radiograph as its own DICOM file and open that.",
                   source=source)
    rows, cols = int(_number(ds.get("Rows"), 0)), int(_number(ds.get("Columns"), 0))
    check_dimensions(cols, rows, name, source=source)
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise fail(name, f"its image is stored as '{syntax.name}', which is not a still-image format "
                             "FedXray can decode", "Export it from the PACS as an uncompressed DICOM image "
                                                   "(Explicit VR Little Endian).", source=source) from None
        if not decoder.is_available:
            raise fail(name, f"its image is compressed as '{syntax.name}' and the decoder for that compression "
                             "is not installed on this workstation",
                       "Ask the PACS to send it uncompressed (Explicit VR Little Endian), or ask IT to install "
                       f"a decoder ({'; '.join(decoder.missing_dependencies)}).", source=source)


def _to_gray(rgb: np.ndarray, full_scale: float) -> np.ndarray:
    rgb = rgb.astype(np.float32) * np.float32(1.0 / full_scale)
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def decode_dicom(data: bytes, *, name: str, source: str) -> Radiograph:
    """Decode a DICOM file's bytes (with or without preamble) into a Radiograph; refuse with ImageReadError."""
    ds = _read_dataset(data, name, source)
    _check_image(ds, name, source)
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        stored = ds.pixel_array
    except MemoryError:
        raise fail(name, "there is not enough memory to decode this image",
                   "Close other programs and try again.", source=source) from None
    except Exception as exc:
        coding = f" (compressed as '{syntax.name}')" if syntax.is_compressed else ""
        raise fail(name, f"the image data in this DICOM file{coding} is damaged or incomplete, e.g. the file "
                         f"was cut short while copying (technical detail: {detail(exc)})", _EXPORT,
                   source=source) from exc
    photometric = _text(ds.get("PhotometricInterpretation")).upper() or "MONOCHROME2"
    meta = _meta(ds)
    try:
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(stored, ds)
            pixels = _to_gray(rgb, np.iinfo(rgb.dtype).max)
        elif stored.ndim == 3:
            bits = int(_number(ds.get("BitsStored"), 8) or 8)
            pixels = _to_gray(stored, 2.0**bits - 1)
        else:
            return _monochrome(ds, stored, photometric, meta, source)
    except ImageReadError:
        raise
    except Exception as exc:
        raise fail(name, f"its pixel values cannot be converted for display ({detail(exc)})", _EXPORT,
                   source=source) from exc
    return Radiograph(pixels=np.clip(pixels, 0.0, 1.0), source=source, format="DICOM", meta=meta)


def _monochrome(ds, stored: np.ndarray, photometric: str, meta: dict[str, str], source: str) -> Radiograph:
    """Modality LUT -> VOI LUT (or window, or a window derived from the data) -> MONOCHROME1 inversion."""
    if ds.get("ModalityLUTSequence"):
        raw = apply_modality_lut(stored, ds).astype(np.float32)
    else:
        slope = _number(ds.get("RescaleSlope"), 1.0) or 1.0
        intercept = _number(ds.get("RescaleIntercept"), 0.0)
        raw = stored.astype(np.float32)
        if slope != 1.0:
            raw *= np.float32(slope)
        if intercept:
            raw += np.float32(intercept)
    invert = photometric == "MONOCHROME1"
    function = _text(ds.get("VOILUTFunction")).upper() or "LINEAR"
    function = function if function in WINDOW_FUNCTIONS else "LINEAR"
    window = _file_window(ds)
    if window is None:
        function = "LINEAR"
        window = _derived_window(raw, stored, ds.get("PixelPaddingValue"))
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        depth = int(lut[0].LUTDescriptor[2])
        pixels = apply_voi(np.rint(raw).astype(np.int64), ds).astype(np.float32)
        pixels *= np.float32(1.0 / (2.0**depth - 1))
        np.clip(pixels, 0.0, 1.0, out=pixels)
        if invert:
            np.subtract(1.0, pixels, out=pixels)
    else:
        pixels = apply_window(raw, *window, invert=invert, function=function)
    return Radiograph(pixels=pixels, source=source, format="DICOM", meta=meta, raw=raw, window=window,
                      invert=invert, voi_function=function)
