"""Hostile input fuzzing of the app's open path: app.ui.tasks.open_image (fl.imageio, fl.dicomio) with Hypothesis.

Whatever bytes a file holds, opening it either gives a usable radiograph (2-D float32 pixels, finite, in [0, 1],
drawable as a QImage, accepted by the guardrails and turned into a finite network input) or raises
ImageReadError, the one error type whose message the app shows. Any other exception is a crash and fails.

Inputs: seeds made at test time from a real radiograph (PNG 8 and 16 bit, JPEG, BMP, TIFF, and DICOM:
uncompressed 16 bit, MONOCHROME1 with a VOI LUT, a Modality LUT, RLE-compressed, without preamble), mutated by
byte flips, overwrites, insertions, deletions, duplications and truncation; and DICOM files whose header values
are drawn at random (sizes, bit depths, signedness, samples, photometric interpretation, rescale, window,
padding, frames, transfer syntax, pixel data of any length). The number of examples is bounded by the Hypothesis
profile (tests/conftest.py: "ci" by default, $FEDXRAY_FUZZ_PROFILE=long for a longer search).
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from tests.conftest import require_shared_data

pytestmark = pytest.mark.timeout(600)  # a hang guard: the profile bounds the examples, this the wall time
WORK = Path(tempfile.mkdtemp(prefix="fedxray-fuzz-"))  # one file rewritten per example; removed at exit
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


@cache
def real_pixels() -> np.ndarray:
    """A real radiograph, reduced to 48 x 40 pixels (small seeds keep every example fast)."""
    source = sorted(require_shared_data("cxr", "Normal").glob("*.png"))[0]
    return np.asarray(Image.open(source).convert("L").resize((40, 48)), np.uint8)


def _dicom(stored: np.ndarray, *, syntax=ExplicitVRLittleEndian, photometric="MONOCHROME2", **tags) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated if stored.dtype.itemsize == 1 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


def _bytes_of(ds: Dataset, *, preamble: bool = True) -> bytes:
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


@cache
def seeds() -> dict[str, bytes]:
    gray = real_pixels()
    deep = gray.astype(np.uint16) * 16                                     # 12-bit values
    out = {}
    for fmt, mode in (("PNG", "L"), ("JPEG", "L"), ("BMP", "L"), ("TIFF", "L")):
        buffer = io.BytesIO()
        Image.fromarray(gray, mode).save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(deep.astype(np.uint16)).save(buffer, format="PNG")
    out["PNG16"] = buffer.getvalue()
    out["DICOM"] = _bytes_of(_dicom(deep, WindowCenter=2048, WindowWidth=4096, RescaleSlope=1, RescaleIntercept=0))
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4096, 0, 16])
    lut.add_new(0x00283006, "US", list(range(0, 65536, 16)))
    voi = _dicom(deep, photometric="MONOCHROME1")
    voi.VOILUTSequence = [lut]
    out["DICOM-VOI-M1"] = _bytes_of(voi)
    modality = _dicom(deep, WindowCenter=30000, WindowWidth=60000, PixelPaddingValue=0)
    modality.ModalityLUTSequence = [lut]
    out["DICOM-MODALITY"] = _bytes_of(modality)
    rle = _dicom(deep, WindowCenter=2048, WindowWidth=4096)
    rle.compress(RLELossless, deep)
    out["DICOM-RLE"] = _bytes_of(rle)
    raw = _dicom(deep)
    del raw.file_meta
    out["DICOM-RAW"] = _bytes_of(raw, preamble=False)
    return out


def check_open(data: bytes, name: str) -> None:
    """The property: a usable radiograph or ImageReadError, nothing else."""
    from app.core import guardrails
    from app.ui.tasks import open_image
    from fl.preprocess import ImageReadError, preprocess

    path = WORK / name
    path.write_bytes(data)
    try:
        opened = open_image(path)
    except ImageReadError as exc:
        assert str(exc).startswith("Cannot open") and len(str(exc)) > 30, str(exc)
        event("refused: " + str(exc).split(": ", 1)[1][:40])
        return
    event("opened")
    pixels = opened.radiograph.pixels
    assert pixels.ndim == 2 and pixels.dtype == np.float32 and pixels.size > 0
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert (opened.image.height(), opened.image.width()) == pixels.shape
    guardrails.check(opened.radiograph)
    x, _ = preprocess(opened.radiograph, input_size=64, scaling="tf")
    assert x.shape == (64, 64, 3) and np.isfinite(x).all()


# ---------------------------------------------------------------- mutated seeds
_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 64)),
    st.tuples(st.just("duplicate"), st.integers(0, 1 << 20), st.integers(1, 256)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
)


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in edits:
        at = at % (len(buf) + 1)
        if kind == "flip" and at < len(buf):
            buf[at] ^= arg
        elif kind == "set":
            buf[at:at + len(arg)] = arg
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "delete":
            del buf[at:at + arg]
        elif kind == "duplicate":
            buf[at:at] = buf[at:at + arg]
        elif kind == "truncate":
            del buf[at:]
    return bytes(buf)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(["PNG", "PNG16", "JPEG", "BMP", "TIFF", "DICOM", "DICOM-VOI-M1", "DICOM-MODALITY",
                             "DICOM-RLE", "DICOM-RAW"]),
       edits=st.lists(_edit, min_size=1, max_size=6))
def test_mutated_real_images_open_or_are_refused_clearly(seed, edits):
    check_open(mutate(seeds()[seed], edits), f"mutated-{seed.lower()}.img")


# ---------------------------------------------------------------- DICOM headers drawn at random
_number_text = st.one_of(st.integers(-70000, 70000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                         st.sampled_from(["", " ", "abc", "1e400", "-0", "NaN", "1\\2", "0.5\\x"]))
# Known transfer syntaxes only: unknown UIDs are issue 15's case (refused with a message on the `robust` branch).
_syntax = st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                           DeflatedExplicitVRLittleEndian, RLELossless, JPEGBaseline8Bit, JPEGLSLossless,
                           JPEG2000Lossless])


def _raw(ds: Dataset, keyword: str, vr: str, text: str) -> None:
    """Put `text` into the file as the element's bytes, valid for its VR or not (pydicom would refuse to set it)."""
    data = text.encode("latin-1", "replace")
    data += b" " * (len(data) % 2)
    tag = Tag(tag_for_keyword(keyword))
    ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)


@st.composite
def random_dicom(draw) -> bytes:
    gray = real_pixels()
    rows, cols = draw(st.integers(0, 60)), draw(st.integers(0, 60))
    if draw(st.booleans()):  # a coherent image header: only the value tags below are drawn
        bits_allocated, samples = 16, 1
        ds = _dicom(gray, syntax=draw(st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian])),
                    photometric=draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2"])))
        ds.Rows, ds.Columns, ds.BitsAllocated = rows, cols, 16
        ds.BitsStored = draw(st.sampled_from([10, 12, 14, 16]))
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = draw(st.sampled_from([0, 1]))
    else:  # anything goes
        bits_allocated = draw(st.sampled_from([1, 8, 16, 32, 12, 24, 64]))
        samples = draw(st.sampled_from([1, 1, 1, 3, 4, 0]))
        ds = _dicom(gray, syntax=draw(_syntax),
                    photometric=draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR",
                                                      "YBR_FULL", "YBR_FULL_422", "", "GARBAGE"])))
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = rows, cols, samples, bits_allocated
        ds.BitsStored = draw(st.integers(0, 40))
        ds.HighBit = draw(st.integers(0, 40))
        ds.PixelRepresentation = draw(st.sampled_from([0, 1, 2]))
        if samples > 1:
            ds.PlanarConfiguration = draw(st.sampled_from([0, 1, 7]))
    for tag in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if draw(st.booleans()):
            _raw(ds, tag, "DS", draw(_number_text))
    if draw(st.booleans()):
        ds.VOILUTFunction = draw(st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "LOG", ""]))
    if draw(st.booleans()):
        ds.PixelPaddingValue = draw(st.integers(0, 32767))
    if draw(st.booleans()):
        _raw(ds, "NumberOfFrames", "IS", draw(st.sampled_from(["1", "0", "2", "-1", "x", "", "1e9"])))
    expected = rows * cols * max(samples, 1) * max(bits_allocated, 8) // 8
    size = draw(st.sampled_from([expected, expected, 0, 1, expected + 1, max(expected - 1, 0), expected * 2]))
    body = np.resize(gray.ravel(), size).tobytes() if size else b""
    body += b"\0" if len(body) % 2 else b""
    if ds.file_meta.TransferSyntaxUID.is_compressed:  # the same bytes as one encapsulated fragment
        ds.PixelData = encapsulate([body or b"\0\0"])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = body
    try:
        return _bytes_of(ds)
    except Exception as exc:  # noqa: BLE001 - pydicom cannot even write such a header: there is no file to open
        event(f"header pydicom cannot write: a plain file instead ({type(exc).__name__}: {str(exc)[:60]})")
        return _bytes_of(_dicom(gray))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=random_dicom())
def test_dicom_with_random_header_values_opens_or_is_refused_clearly(data):
    check_open(data, "random.dcm")
