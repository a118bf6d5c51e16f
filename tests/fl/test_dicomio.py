"""DICOM decoding: real CR files, hand-made files with known LUTs and windows, hostile DICOM input."""

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    BasicTextSRStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from fl.preprocess import ImageReadError, apply_window, read_image
from tests.conftest import require_shared_data


def _shared(name: str) -> Path:
    return require_shared_data("dicom", name)


def make_dicom(stored: np.ndarray, *, bits_stored: int | None = None, signed: bool = False,
               photometric: str = "MONOCHROME2", **tags) -> Dataset:
    """A DX data set holding ``stored`` (2-D, or 3-D RGB) uncompressed, plus any extra tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PatientSex, ds.PatientAge, ds.StudyDate = "M", "054Y", "20240102"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _linear(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.2.1 written out for one value, output range [0, 1]."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 1.0
    return (x - (c - 0.5)) / (w - 1) + 0.5


# ---------------------------------------------------------------- real files

def test_rg1_uncr_monochrome1_window_and_inversion():
    path = _shared("RG1_UNCR.dcm")
    image = read_image(path)
    stored = pydicom.dcmread(path).pixel_array           # no rescale tags: modality values = stored values
    assert image.format == "DICOM" and image.pixels.shape == (1955, 1841)
    assert image.window == (15000.0, 30000.0) and image.invert is True and image.voi_function == "LINEAR"
    np.testing.assert_array_equal(image.raw, stored.astype(np.float32))
    spots = [(977, 920), (100, 100), np.unravel_index(stored.argmin(), stored.shape),
             np.unravel_index(stored.argmax(), stored.shape)]
    for r, c in spots:
        x = float(stored[r, c])
        expected = 1.0 - _linear(x, 15000.0, 30000.0)    # MONOCHROME1: high values are dark
        assert image.pixels[r, c] == pytest.approx(expected, abs=1e-6)
    # Lungs (dark on a correct display) are darker than the spine/mediastinum.
    assert image.pixels[900:1100, 300:600].mean() < image.pixels[900:1100, 850:1000].mean()
    meta = image.meta
    assert (meta["Modality"], meta["BodyPartExamined"], meta["ViewPosition"]) == ("CR", "CHEST", "PA")
    assert meta["PhotometricInterpretation"] == "MONOCHROME1"
    assert (meta["Rows"], meta["Columns"], meta["BitsStored"]) == ("1955", "1841", "15")
    assert meta["SOPInstanceUID"].startswith("1.3.6.1.4.1.5962")
    assert meta["PatientAge"] == "" and "ImageLaterality" not in meta


def test_rg1_j2k_decodes_to_nearly_the_same_image():
    uncompressed = read_image(_shared("RG1_UNCR.dcm"))
    j2k = read_image(_shared("RG1_J2KI.dcm"))
    assert j2k.pixels.shape == uncompressed.pixels.shape and j2k.invert and j2k.window == uncompressed.window
    assert np.abs(j2k.pixels - uncompressed.pixels).mean() < 0.005
    assert np.corrcoef(j2k.pixels.ravel(), uncompressed.pixels.ravel())[0, 1] > 0.999
    assert j2k.pixel_sha256() != uncompressed.pixel_sha256()      # lossy: different pixels


def test_ct_small_signed_with_rescale_and_derived_window():
    path = _shared("CT_small.dcm")
    image = read_image(path)
    stored = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(image.raw, stored.astype(np.float32) - 1024.0)   # slope 1, intercept -1024
    center, width = image.window                    # no window in the file: derived from the data
    assert image.raw.min() <= center - width / 2 < center + width / 2 <= image.raw.max()
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0 and not image.invert
    assert image.meta["Modality"] == "CT"


# ---------------------------------------------------------------- hand-made files, expectations by hand

def test_signed_rescale_and_window_monochrome2_and_1(tmp_path):
    stored = np.array([[-100, 0], [100, 500]], np.int16)
    tags = dict(RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=-900, WindowWidth=401)
    # raw = 2 * stored - 1000 = [[-1200, -1000], [-800, 0]]; c - 0.5 = -900.5, w - 1 = 400:
    # -1200 -> 0; -1000 -> -99.5/400 + 0.5 = 0.25125; -800 -> 100.5/400 + 0.5 = 0.75125; 0 -> 1.
    expected = np.array([[0.0, 0.25125], [0.75125, 1.0]])
    mono2 = read_image(save(make_dicom(stored, signed=True, **tags), tmp_path / "m2.dcm"))
    np.testing.assert_array_equal(mono2.raw, [[-1200, -1000], [-800, 0]])
    np.testing.assert_allclose(mono2.pixels, expected, atol=1e-6)
    assert mono2.window == (-900.0, 401.0)
    mono1 = read_image(save(make_dicom(stored, signed=True, photometric="MONOCHROME1", **tags), tmp_path / "m1.dcm"))
    np.testing.assert_allclose(mono1.pixels, 1.0 - expected, atol=1e-6)
    assert mono1.invert and mono1.pixel_sha256() == mono2.pixel_sha256()


def test_signed_12_bit_in_16_with_garbage_high_bits(tmp_path):
    # Two's complement 12-bit values -5, 5, 2047, -2048 with junk in the 4 unused high bits.
    stored = np.array([[0x0FFB | 0xF000, 0x0005 | 0xA000], [0x07FF, 0x0800]], np.uint16)
    ds = make_dicom(stored, bits_stored=12, signed=True, WindowCenter=0, WindowWidth=4096)
    image = read_image(save(ds, tmp_path / "s12.dcm"))
    np.testing.assert_array_equal(image.raw, [[-5, 5], [2047, -2048]])
    expected = [[(-5 + 0.5) / 4095 + 0.5, (5 + 0.5) / 4095 + 0.5], [1.0, 0.0]]
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)


def test_unsigned_15_bit_and_8_bit(tmp_path):
    stored = np.array([[0, 32767], [16384, 8192]], np.uint16)
    image = read_image(save(make_dicom(stored, bits_stored=15, WindowCenter=16384, WindowWidth=32768),
                            tmp_path / "u15.dcm"))
    np.testing.assert_allclose(image.pixels, [[0.0, 1.0], [_linear(16384, 16384, 32768), _linear(8192, 16384, 32768)]],
                               atol=1e-6)
    eight = np.array([[0, 0, 100, 100]], np.uint8)     # no window: derived from the 0.5/99.5 percentiles
    image = read_image(save(make_dicom(eight), tmp_path / "u8.dcm"))
    assert image.window == (50.0, 100.0)               # percentiles 0 and 100 -> centre 50, width 100
    np.testing.assert_allclose(image.pixels, [[0.0, 0.0, 1.0, 1.0]], atol=1e-6)


def test_sigmoid_voi_function(tmp_path):
    stored = np.array([[50, 100, 150, 125]], np.uint16)
    ds = make_dicom(stored, WindowCenter=100, WindowWidth=50, VOILUTFunction="SIGMOID")
    image = read_image(save(ds, tmp_path / "sig.dcm"))
    # y = 1 / (1 + exp(-4 (x - 100) / 50))
    expected = [[1 / (1 + math.exp(4)), 0.5, 1 / (1 + math.exp(-4)), 1 / (1 + math.exp(-2))]]
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.voi_function == "SIGMOID"


def test_voi_lut_sequence_is_preferred(tmp_path):
    stored = np.array([[0, 1, 2, 3, 5]], np.uint16)
    ds = make_dicom(stored, WindowCenter=2, WindowWidth=4)
    item = Dataset()
    item.add_new(0x00283002, "US", [4, 1, 16])                 # 4 entries, first mapped value 1, 16 bits
    item.add_new(0x00283006, "US", [0, 1000, 30000, 65535])
    ds.VOILUTSequence = [item]
    image = read_image(save(ds, tmp_path / "lut.dcm"))
    # 0 (< first) -> entry 0; 1 -> entry 0; 2 -> entry 1; 3 -> entry 2; 5 (beyond) -> last entry.
    np.testing.assert_allclose(image.pixels, [[0, 0, 1000 / 65535, 30000 / 65535, 1.0]], atol=1e-6)
    assert image.window == (2.0, 4.0)                            # kept for re-windowing in the viewer


def test_rgb_dicom_to_luma(tmp_path):
    rgb = np.array([[[255, 0, 0], [10, 20, 30]]], np.uint8)
    image = read_image(save(make_dicom(rgb, photometric="RGB"), tmp_path / "rgb.dcm"))
    np.testing.assert_allclose(image.pixels, [[0.299, (0.299 * 10 + 0.587 * 20 + 0.114 * 30) / 255]], atol=1e-6)
    assert image.raw is None and image.window is None


def test_meta_optional_tags(tmp_path):
    ds = make_dicom(np.zeros((4, 4), np.uint16), ImageLaterality="L", PatientOrientation=["P", "F"],
                    SeriesDescription="Chest PA")
    meta = read_image(save(ds, tmp_path / "meta.dcm")).meta
    assert meta["ImageLaterality"] == "L" and meta["PatientOrientation"] == "P\\F"
    assert (meta["Modality"], meta["PatientAge"], meta["SeriesDescription"]) == ("DX", "054Y", "Chest PA")
    assert all(isinstance(v, str) for v in meta.values())


@pytest.mark.parametrize("implicit", [True, False])
def test_no_preamble_no_extension(tmp_path, implicit):
    ds = pydicom.dcmread(_shared("CT_small.dcm"))
    reference = read_image(_shared("CT_small.dcm"))
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=implicit, little_endian=True)
    path = tmp_path / "IM00001"
    path.write_bytes(buffer.getvalue())
    assert path.read_bytes()[128:132] != b"DICM"
    image = read_image(path)
    assert image.format == "DICOM"
    np.testing.assert_array_equal(image.raw, reference.raw)


def test_re_windowing_keeps_identity():
    image = read_image(_shared("RG1_UNCR.dcm"))
    narrow = apply_window(image.raw, 12000, 8000, invert=image.invert)
    other = dataclasses.replace(image, pixels=narrow, window=(12000.0, 8000.0))
    assert other.pixel_sha256() == image.pixel_sha256()


# ---------------------------------------------------------------- apply_window by hand

def test_apply_window_by_hand():
    x = np.array([0.0, 99.5, 100.0, 150.0, 200.0])
    np.testing.assert_allclose(apply_window(x, 100, 101), [0, 0.5, 0.505, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(apply_window(x, 100, 101, invert=True), [1, 0.5, 0.495, 0, 0], atol=1e-6)
    np.testing.assert_allclose(apply_window(x, 100, 100, function="LINEAR_EXACT"), [0, 0.495, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_array_equal(apply_window(x, 100, 1), [0, 0, 1, 1, 1])   # width 1: a step at c - 0.5
    assert apply_window(x, 100, 10).dtype == np.float32
    with pytest.raises(ValueError):
        apply_window(x, 100, 10, function="LOG")


# ---------------------------------------------------------------- hostile DICOM

def _refused(path, *words) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_truncated_dicom(tmp_path):
    data = _shared("RG1_UNCR.dcm").read_bytes()
    half = tmp_path / "half.dcm"
    half.write_bytes(data[: len(data) // 2])
    _refused(half, "half.dcm", "damaged or incomplete", "export")
    for n in (140, 700):
        head = tmp_path / f"head{n}.dcm"
        head.write_bytes(data[:n])
        _refused(head, "DICOM")


def test_dicom_without_pixel_data(tmp_path):
    ds = make_dicom(np.zeros((4, 4), np.uint16))
    del ds.PixelData                                          # an image object whose pixels are missing
    _refused(save(ds, tmp_path / "nopix.dcm"), "nopix.dcm", "without pixel data", "incomplete")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage   # a report: no image at all
    _refused(save(ds, tmp_path / "report.dcm"), "report.dcm", "no image", "Basic Text SR", "radiograph itself")


def test_dicomdir(tmp_path):
    ds = make_dicom(np.zeros((4, 4), np.uint16))
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"   # Media Storage Directory
    ds.DirectoryRecordSequence = []
    _refused(save(ds, tmp_path / "DICOMDIR"), "DICOMDIR")


def test_multi_frame_dicom_is_refused(tmp_path):
    frames = np.zeros((3, 4, 4), np.uint16)
    ds = make_dicom(frames[0], NumberOfFrames=3)
    ds.PixelData = frames.tobytes()
    _refused(save(ds, tmp_path / "cine.dcm"), "3 images", "multi-frame", "single")


def test_damaged_compressed_pixel_data(tmp_path):
    ds = make_dicom(np.zeros((8, 8), np.uint16))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    _refused(save(ds, tmp_path / "jls.dcm"), "JPEG-LS", "damaged", "export the image again")


def test_missing_codec(tmp_path):
    ds = make_dicom(np.zeros((8, 8), np.uint16))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: FedXray decodes still images only
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really MPEG \x00\x00"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    _refused(save(ds, tmp_path / "mpeg.dcm"), "MPEG2", "not a still-image format", "uncompressed")


@pytest.mark.timeout(60)   # a hang guard, not a timing assertion
def test_dicom_bomb_is_refused_before_decoding(tmp_path):
    ds = make_dicom(np.zeros((2, 2), np.uint16))
    ds.Rows = ds.Columns = 65535                              # claims 4.3 gigapixels, holds 8 bytes
    _refused(save(ds, tmp_path / "bomb.dcm"), "65535 x 65535", "megapixels", "not a radiograph")


@pytest.mark.parametrize("change", ["Columns-1", "Columns+1", "Rows-3", "Rows+3"])
def test_pixel_data_longer_or_shorter_than_the_header_says_is_refused(tmp_path, change):
    """A wrong Columns value would be decoded sheared (and classified with confidence): refuse it instead."""
    ds = pydicom.dcmread(_shared("RG1_UNCR.dcm"))
    tag, delta = change[:-2], int(change[-2:])
    rows, cols = int(ds.Rows), int(ds.Columns)
    setattr(ds, tag, getattr(ds, tag) + delta)
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * int(ds.BitsAllocated) // 8
    actual = len(ds.PixelData)
    assert actual == rows * cols * 2 != expected                  # the file itself is intact, its header lies
    message = _refused(save(ds, tmp_path / "lying.dcm"), "lying.dcm", f"{actual:,} bytes", f"{expected:,}",
                       f"{ds.Rows} rows x {ds.Columns} columns", "export the image again")
    assert ("more than" if actual > expected else "less than") in message


def test_odd_length_pixel_data_with_its_padding_byte_is_accepted(tmp_path):
    stored = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5) * 10  # 15 bytes, padded to 16 on save
    ds = make_dicom(stored)
    rad = read_image(save(ds, tmp_path / "odd.dcm"))
    assert rad.raw.shape == (3, 5) and np.array_equal(rad.raw, stored.astype(np.float32))
    ds.PixelData = stored.tobytes() + b"\x00" * 3                  # more than the one padding byte
    _refused(save(ds, tmp_path / "extra.dcm"), "extra.dcm", "18 bytes", "more than the 15")


def test_an_unknown_transfer_syntax_is_this_files_clear_error(tmp_path):
    ds = pydicom.dcmread(_shared("RG1_UNCR.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9"
    _refused(save(ds, tmp_path / "odd-syntax.dcm"), "odd-syntax.dcm", "1.2.3.4.5.6.7.8.9",
             "not a DICOM transfer syntax", "uncompressed")

# ---------------------------------------------------------------- compressed transfer syntaxes

@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_lossless_compressed_signed_dicom(tmp_path, syntax):
    stored = (np.arange(32 * 32, dtype=np.int16).reshape(32, 32) * 3 - 1500)
    ds = make_dicom(stored, signed=True, RescaleSlope=1, RescaleIntercept=-24, WindowCenter=0, WindowWidth=2000)
    ds.compress(syntax, stored)
    image = read_image(save(ds, tmp_path / "compressed.dcm"))
    np.testing.assert_array_equal(image.raw, stored.astype(np.float32) - 24)   # lossless: exact values
    assert image.pixels[0, 0] == pytest.approx(_linear(-1524, 0, 2000), abs=1e-6)


def test_jpeg_baseline_dicom(tmp_path):
    gray = np.tile(np.linspace(0, 250, 64).astype(np.uint8), (64, 1))
    jpeg = io.BytesIO()
    Image.fromarray(gray).save(jpeg, format="JPEG", quality=100)
    ds = make_dicom(gray, WindowCenter=128, WindowWidth=256)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    image = read_image(save(ds, tmp_path / "jpeg.dcm"))
    assert np.abs(image.raw - gray).max() <= 3                                  # lossy, quality 100


@pytest.mark.parametrize("syntax", ["JPEGLosslessProcess14_1", "JPEGLSLossless"])
def test_jpeg_lossless_and_jpeg_ls_decode_exactly(tmp_path, syntax):
    # Common in CR/DR archives; decoded through GDCM. The file is re-encoded from RG1_UNCR by GDCM itself.
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(_shared("RG1_UNCR.dcm")))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    out = tmp_path / f"{syntax}.dcm"
    writer.SetFileName(str(out))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    assert pydicom.dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed
    original = read_image(_shared("RG1_UNCR.dcm"))
    decoded = read_image(out)
    np.testing.assert_array_equal(decoded.raw, original.raw)
    np.testing.assert_array_equal(decoded.pixels, original.pixels)


# ---------------------------------------------------------------- rare encodings, built from a real radiograph
# The stored values are a real CR radiograph's (RG1_UNCR, every 4th pixel, 15 -> 12 bits: 489 x 461 pixels, few
# enough that the derived window samples every pixel). Each expectation is worked out here with numpy from the
# standard's definitions (PS3.3 C.11.1 Modality LUT, C.11.2 VOI LUT, C.7.5.1.1.2 Pixel Padding Value,
# C.7.6.3.1.2 MONOCHROME1), then checked on what is displayed (Radiograph.pixels) and on what is classified (the
# network input and the tiny network's probabilities).
def _by_hand_linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (_linear above) for an array."""
    x = np.asarray(x, np.float64)
    y = (x - (c - 0.5)) / (w - 1) + 0.5
    return np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 1.0, y))


def _lut_item(first: int, data: np.ndarray, **extra) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [len(data), first, 16])       # LUT Descriptor: entries, first value, bits
    item.add_new(0x00283006, "US", [int(v) for v in data])         # LUT Data
    for key, value in extra.items():
        setattr(item, key, value)
    return item


def _lut_lookup(first: int, data: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values below the first mapped value take the first entry, above the last the last (C.11.1.1, C.11.2.1.1)."""
    return np.asarray(data, np.float64)[np.clip(x.astype(np.int64) - first, 0, len(data) - 1)]


@pytest.fixture(scope="module")
def real12() -> np.ndarray:
    stored = pydicom.dcmread(_shared("RG1_UNCR.dcm")).pixel_array
    out = (stored[::4, ::4] >> 3).astype(np.uint16)
    assert out.shape == (489, 461) and out.max() < 4096 and len(np.unique(out)) > 1000
    return out


@pytest.fixture(scope="module")
def tiny_classifier(tiny_model_dir):
    from fl.inference import Classifier

    return Classifier(tiny_model_dir)


def _check_displayed_and_classified(path, expected, classifier, *, mask=None, atol=1e-5):
    """read_image(path).pixels equal `expected` (where `mask`), and so do the network input and probabilities."""
    from fl.preprocess import preprocess
    from fl.radiograph import Radiograph

    image = read_image(path)
    keep = np.ones(expected.shape, bool) if mask is None else mask
    np.testing.assert_allclose(image.pixels[keep], expected[keep], atol=atol)
    by_hand = Radiograph(pixels=np.where(keep, expected, image.pixels).astype(np.float32), source="hand", format="DICOM")
    size, scaling = classifier.card.input_size, classifier.arch.scaling
    np.testing.assert_allclose(preprocess(image, input_size=size, scaling=scaling)[0],
                               preprocess(by_hand, input_size=size, scaling=scaling)[0], atol=4 * atol)
    np.testing.assert_allclose(classifier.classify(image).probabilities, classifier.classify(by_hand).probabilities,
                               atol=1e-5)
    return image


def test_monochrome1_with_a_voi_lut_sequence_is_inverted_after_the_lut(tmp_path, real12, tiny_classifier):
    first = 200                                                    # stored values below 200 take entry 0
    data = np.rint(65535 * np.linspace(0.0, 1.0, 3000) ** 0.6)     # a gamma curve over stored 200..3199
    ds = make_dicom(real12, bits_stored=12, photometric="MONOCHROME1", WindowCenter=2048, WindowWidth=4096)
    ds.VOILUTSequence = [_lut_item(first, data, LUTExplanation="gamma 0.6")]
    path = save(ds, tmp_path / "m1_voilut.dcm")
    lut = _lut_lookup(first, data, real12) / 65535                 # the VOI LUT output, 16 bits -> 0-1
    expected = 1.0 - lut                                           # MONOCHROME1: the minimum is white
    image = _check_displayed_and_classified(path, expected, tiny_classifier)
    assert image.invert is True
    # MONOCHROME1: the lowest stored values (bone, the spine) are displayed bright, the highest (lung) dark.
    assert image.pixels[real12 < np.percentile(real12, 5)].mean() > 0.8 > 0.2 > \
        image.pixels[real12 > np.percentile(real12, 95)].mean()


def test_modality_lut_sequence_feeds_the_window(tmp_path, real12, tiny_classifier):
    i = np.arange(4096, dtype=np.float64)
    data = np.rint(1000 + 0.003 * i**2)                            # non-linear: no slope/intercept gives this
    c, w = 16000.0, 30000.0
    ds = make_dicom(real12, bits_stored=12, WindowCenter=c, WindowWidth=w)
    ds.ModalityLUTSequence = [_lut_item(0, data, ModalityLUTType="US")]
    path = save(ds, tmp_path / "modality_lut.dcm")
    raw = _lut_lookup(0, data, real12)
    image = _check_displayed_and_classified(path, _by_hand_linear(raw, c, w), tiny_classifier)
    np.testing.assert_array_equal(image.raw, raw.astype(np.float32))
    assert image.window == (c, w)


def test_pixel_padding_value_is_left_out_of_the_derived_window(tmp_path, real12, tiny_classifier):
    stored = real12.copy()
    pad = 4095                                                      # a white collimator frame, 60 pixels wide
    stored[:60, :] = stored[-60:, :] = stored[:, :60] = stored[:, -60:] = pad
    ds = make_dicom(stored, bits_stored=12, PixelPaddingValue=pad, RescaleSlope=2, RescaleIntercept=-1024)
    path = save(ds, tmp_path / "padding.dcm")
    body = stored != pad
    assert 0.3 < 1 - body.mean() < 0.5                              # enough padding to move any percentile
    raw = 2.0 * stored - 1024
    lo, hi = np.percentile(raw[body], [0.5, 99.5])                  # every pixel is sampled at this size
    c, w = (lo + hi) / 2, hi - lo
    image = _check_displayed_and_classified(path, _by_hand_linear(raw, c, w), tiny_classifier)
    assert image.window == pytest.approx((c, w), abs=1e-3)
    with_pad = np.percentile(raw, [0.5, 99.5])                      # what counting the frame would have given
    assert abs(with_pad[1] - hi) > 100, "the padding would not change the window: the test would prove nothing"


def test_rescale_slope_intercept_and_window_on_real_pixels_monochrome1(tmp_path, real12, tiny_classifier):
    c, w = 900.0, 2500.0
    ds = make_dicom(real12, bits_stored=12, photometric="MONOCHROME1", RescaleSlope=0.5, RescaleIntercept=-300,
                    WindowCenter=c, WindowWidth=w)
    path = save(ds, tmp_path / "rescale_m1.dcm")
    raw = 0.5 * real12.astype(np.float64) - 300
    image = _check_displayed_and_classified(path, 1.0 - _by_hand_linear(raw, c, w), tiny_classifier)
    np.testing.assert_allclose(image.raw, raw, atol=1e-4)


def test_a_multi_valued_transfer_syntax_is_refused(tmp_path):
    # Found by tests/app/ui/test_fuzz_open.py: a backslash in the UID made it a list, and the check of the
    # transfer syntax ended in an AttributeError instead of a message.
    data = save(make_dicom(np.zeros((4, 4), np.uint16)), tmp_path / "one.dcm").read_bytes()
    assert data.count(b"1.2.840.10008.1.2.1\x00") == 1
    path = tmp_path / "two_syntaxes.dcm"
    path.write_bytes(data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2\\1\x00"))
    _refused(path, "two_syntaxes.dcm", "several transfer syntaxes", "1.2.840.10008.1.2\\1", "export the image again")


def test_an_element_with_an_unknown_value_representation_is_refused(tmp_path):
    # Found by tests/app/ui/test_fuzz_open.py: one flipped byte turned the VR of (0002,0002) from UI into TI, and
    # pydicom's lazy parsing raised NotImplementedError when the element was first used.
    data = save(make_dicom(np.zeros((4, 4), np.uint16)), tmp_path / "one.dcm").read_bytes()
    assert data.count(b"\x02\x00\x02\x00UI") == 1
    path = tmp_path / "bad_vr.dcm"
    path.write_bytes(data.replace(b"\x02\x00\x02\x00UI", b"\x02\x00\x02\x00TI"))
    _refused(path, "bad_vr.dcm", "header is damaged", "TI", "export the image again")


def test_a_compressed_image_with_an_impossible_depth_is_refused_without_killing_the_process(tmp_path):
    # Found by tests/app/ui/test_fuzz_open.py: GDCM threw a C++ exception through std::terminate on a JPEG Baseline
    # file saying 21 bits stored in 32, which aborted the whole process (the app, `fedxray classify`). Decoded in
    # a child process here, so a regression fails this test instead of killing the test run.
    import subprocess
    import sys

    ds = make_dicom(np.zeros((53, 8), np.uint8), WindowCenter=0, WindowWidth=100)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 21, 28, 1
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([bytes(range(22))])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = save(ds, tmp_path / "deep.dcm")
    code = ("import sys\nfrom fl.preprocess import ImageReadError, read_image\ntry:\n    read_image(sys.argv[1])\n"
            "except ImageReadError as exc:\n    print(exc)\n    sys.exit(3)\n")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, (run.returncode, run.stderr[-2000:])
    assert "deep.dcm" in run.stdout and "21-bit values in 32-bit units" in run.stdout and "Export" in run.stdout


def test_a_rescale_that_overflows_is_refused_not_shown_as_nan(tmp_path):
    # Found by tests/app/ui/test_fuzz_open.py: a slope of 1e300 turned every pixel into inf (float32), the window
    # into NaN, and the app showed and classified an image of NaN.
    ds = make_dicom(np.arange(16, dtype=np.uint16).reshape(4, 4), RescaleSlope="1e300", RescaleIntercept=0)
    _refused(save(ds, tmp_path / "huge_slope.dcm"), "huge_slope.dcm", "cannot be converted for display",
             "rescale slope 1e+300", "export the image again")


def test_a_window_beyond_float32_falls_back_to_the_derived_window(tmp_path):
    # Found by tests/app/ui/test_fuzz_open.py: centre and width 1e300 made float32 windowing compute inf - inf,
    # and the image was shown as NaN. Such a window is ignored; the one derived from the data is used.
    stored = np.array([[0, 0, 100, 100]], np.uint16)
    image = read_image(save(make_dicom(stored, WindowCenter="1e300", WindowWidth="1e300"), tmp_path / "w.dcm"))
    assert image.window == (50.0, 100.0)                  # percentiles 0 and 100 of the data, as without a window
    np.testing.assert_allclose(image.pixels, [[0.0, 0.0, 1.0, 1.0]], atol=1e-6)
