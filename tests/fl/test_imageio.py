"""Plain image formats to grayscale, and every hostile input refused with one clear ImageReadError."""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fl.preprocess import MAX_PIXELS, ImageReadError, read_image
from tests.conftest import require_shared_data


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def _luma(r, g, b):
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


# ---------------------------------------------------------------- formats and modes

def test_16bit_png_with_12bit_values_uses_12bit_full_scale(tmp_path):
    a = np.array([[0, 1000], [2048, 4095]], np.uint16)
    path = _save(Image.fromarray(a), tmp_path / "twelve.png")
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(read_image(path).pixels, a / 4095.0, atol=1e-6)


def test_16bit_png_full_range(tmp_path):
    a = np.array([[0, 30000], [65535, 257]], np.uint16)
    path = _save(Image.fromarray(a), tmp_path / "sixteen.png")
    np.testing.assert_allclose(read_image(path).pixels, a / 65535.0, atol=1e-6)


def test_16bit_tiff(tmp_path):
    a = np.array([[0, 512], [1023, 100]], np.uint16)      # max 1023 -> 10-bit full scale
    path = _save(Image.fromarray(a), tmp_path / "ten.tif")
    image = read_image(path)
    assert image.format == "TIFF"
    np.testing.assert_allclose(image.pixels, a / 1023.0, atol=1e-6)


def test_float_tiff_in_unit_range_is_kept(tmp_path):
    a = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    path = _save(Image.fromarray(a), tmp_path / "float.tiff")
    np.testing.assert_allclose(read_image(path).pixels, a, atol=1e-7)


def test_rgb_bmp_to_luma(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    path = _save(Image.fromarray(rgb), tmp_path / "colour.bmp")
    image = read_image(path)
    assert image.format == "BMP"
    expected = [[_luma(255, 0, 0), _luma(0, 255, 0)], [_luma(0, 0, 255), _luma(10, 20, 30)]]
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)


def test_grayscale_bmp(tmp_path):
    a = np.array([[0, 128], [200, 255]], np.uint8)
    path = _save(Image.fromarray(a), tmp_path / "gray.bmp")
    np.testing.assert_allclose(read_image(path).pixels, a / 255.0, atol=1e-6)


def test_rgba_png_is_composited_onto_black(tmp_path):
    rgba = np.array([[[100, 150, 200, 255], [100, 150, 200, 0]], [[255, 255, 255, 51], [0, 0, 0, 255]]],
                    np.uint8)
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    g = _luma(100, 150, 200)
    np.testing.assert_allclose(read_image(path).pixels, [[g, 0.0], [51 / 255.0, 0.0]], atol=1e-6)


def test_la_png(tmp_path):
    la = np.array([[[200, 255], [200, 102]]], np.uint8)
    path = _save(Image.fromarray(la, "LA"), tmp_path / "la.png")
    np.testing.assert_allclose(read_image(path).pixels, [[200 / 255.0, 200 / 255.0 * 102 / 255.0]], atol=1e-6)


def test_palette_png(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    path = _save(img, tmp_path / "palette.png")
    assert Image.open(path).mode == "P"
    np.testing.assert_allclose(read_image(path).pixels, [[0.0, 1.0, _luma(255, 0, 0)]], atol=1e-6)


def test_bilevel_png(tmp_path):
    img = Image.new("1", (2, 1))
    img.putdata([0, 255])
    path = _save(img, tmp_path / "bilevel.png")
    np.testing.assert_allclose(read_image(path).pixels, [[0.0, 1.0]])


def test_cmyk_tiff(tmp_path):
    # Pillow's CMYK->RGB is R = (255 - C)(255 - K) / 255: with C = M = Y = 0 each channel is 255 - K.
    cmyk = np.array([[[0, 0, 0, 0], [0, 0, 0, 128], [0, 0, 0, 255]]], np.uint8)
    path = _save(Image.fromarray(cmyk, "CMYK"), tmp_path / "cmyk.tif")
    np.testing.assert_allclose(read_image(path).pixels, [[1.0, 127 / 255.0, 0.0]], atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (32, 32), (0, 0, 0, 128))
    path = _save(img, tmp_path / "cmyk.jpg", quality=95)
    image = read_image(path)
    assert image.format == "JPEG"
    np.testing.assert_allclose(image.pixels, 127 / 255.0, atol=3 / 255.0)   # lossy: a few levels


def test_rgb_jpeg(tmp_path):
    path = _save(Image.new("RGB", (40, 20), (60, 120, 180)), tmp_path / "rgb.jpeg", quality=95)
    image = read_image(path)
    assert image.pixels.shape == (20, 40) and image.pixels.dtype == np.float32
    np.testing.assert_allclose(image.pixels, _luma(60, 120, 180), atol=3 / 255.0)


def test_rgba_tiff(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 80, 255
    np.testing.assert_allclose(read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.tif")).pixels,
                               80 / 255.0, atol=1e-6)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                                   # stored sideways: display rotated by 90 degrees
    path = _save(Image.new("L", (40, 20), 100), tmp_path / "phone.jpg", exif=exif)
    assert read_image(path).pixels.shape == (40, 20)


def test_format_comes_from_content_not_name(tmp_path):
    path = _save(Image.new("L", (4, 4), 255), tmp_path / "really_a_png.jpg", format="PNG")
    image = read_image(path)
    assert image.format == "PNG" and float(image.pixels.min()) == 1.0


def test_bytes_input_and_pixel_hash(tmp_path):
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    path = _save(Image.fromarray(a), tmp_path / "x.png")
    from_path = read_image(path)
    from_bytes = read_image(path.read_bytes(), name="upload.png")
    assert from_bytes.source == "upload.png"
    assert from_path.pixel_sha256() == from_bytes.pixel_sha256()
    assert len(from_path.pixel_sha256()) == 64
    other = read_image(_save(Image.fromarray(a[::-1].copy()), tmp_path / "y.png"))
    assert other.pixel_sha256() != from_path.pixel_sha256()


def test_pixels_are_read_only(tmp_path):
    image = read_image(_save(Image.new("L", (4, 4)), tmp_path / "x.png"))
    with pytest.raises(ValueError):
        image.pixels[0, 0] = 1.0


# ---------------------------------------------------------------- hostile input

def _refused(source, *words, **kw) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(source, **kw)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _refused(path, "empty.png", "empty", "export")
    _refused(b"", "empty", name="empty upload")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("Patient 12: follow-up chest film next week.\n")
    _refused(path, "notes.png", "text", "not an image", ".png")


def test_binary_junk_named_dcm(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(bytes(range(256)) * 8)
    _refused(path, "junk.dcm", "not a", "DICOM")


def test_pdf_named_jpg(tmp_path):
    path = tmp_path / "report.jpg"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    _refused(path, "PDF", "convert")


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (256, 256), np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _refused(cut, "cut.png", "damaged or incomplete", "again")


def test_truncated_real_png(tmp_path):
    source = sorted(require_shared_data("cxr", "Normal").glob("*.png"))
    cut = tmp_path / "real_cut.png"
    cut.write_bytes(source[0].read_bytes()[:3000])
    _refused(cut, "damaged or incomplete")


def test_truncated_jpeg(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (256, 256), np.uint8)).save(good, quality=90)
    data = good.read_bytes()
    for n in (20, len(data) // 2):
        cut = tmp_path / f"cut{n}.jpg"
        cut.write_bytes(data[:n])
        _refused(cut, "JPEG", "damaged or incomplete")


def test_truncated_tiff_and_bmp(tmp_path):
    for ext in ("tif", "bmp"):
        good = tmp_path / f"good.{ext}"
        Image.new("L", (128, 128), 7).save(good)
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(good.read_bytes()[:300])
        _refused(cut, "damaged or incomplete")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.timeout(60)   # a hang guard, not a timing assertion
@pytest.mark.parametrize("side", [30000, 10000, 7000])
def test_decompression_bomb_png_is_refused_before_decoding(tmp_path, side, recwarn):
    # 30000^2 trips Pillow's DecompressionBombError, 10000^2 its warning, 7000^2 (49 MP) only our limit.
    # The file is ~100 bytes: decoding would need side^2 bytes (900 MB at 30000), refusing needs nothing.
    import resource
    import tracemalloc

    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(_png_header_only(side, side))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        message = _refused(path, f"bomb{side}.png", "not a radiograph")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert side * side > MAX_PIXELS
    assert "pixel" in message.lower()
    assert peak < 20 * 2**20 and grown_mb < 100
    # Pillow's DecompressionBombWarning became the ImageReadError instead of leaking out as a warning.
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_decompression_bomb_as_bytes():
    _refused(_png_header_only(30000, 30000), "upload.png", name="upload.png")


def test_directory(tmp_path):
    _refused(tmp_path, "folder")


def test_missing_file(tmp_path):
    _refused(tmp_path / "nowhere.png", "nowhere.png", "does not exist")


def test_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file")


def test_character_device():
    _refused("/dev/zero", "not a regular file")


def test_permission_denied(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "locked.png"
    Image.new("L", (4, 4)).save(path)
    path.chmod(0)
    if os.geteuid() != 0:
        _refused(path, "locked.png", "permission denied")
        return
    # root reads any file: check in a forked child that has become the unprivileged user 65534 ("nobody").
    for p in (folder, tmp_path, tmp_path.parent, tmp_path.parent.parent):
        p.chmod(0o755)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # child: drop privileges, read, report, exit
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                read_image(path)
                report = "no error"
            except ImageReadError as exc:
                report = f"ImageReadError: {exc}"
            except BaseException as exc:           # noqa: BLE001 - reported to the parent
                report = f"{type(exc).__name__}: {exc}"
            os.write(w, report.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        report = fh.read().decode()
    os.waitpid(pid, 0)
    assert report.startswith("ImageReadError"), report
    assert "permission denied" in report.lower() and "locked.png" in report


def test_wrong_source_type_is_a_programming_error():
    with pytest.raises(TypeError):
        read_image(io.BytesIO(b"abc"))


def test_a_working_copy_keeps_the_originals_hash_and_size_and_averages_areas(tmp_path):
    from fl.radiograph import WORKING_MAX_SIDE, working_copy

    a = np.zeros((4096, 2048), np.uint16)
    a[:, 1::2] = 65535                                        # columns alternate black and white: grey on average
    rad = read_image(_save(Image.fromarray(a), tmp_path / "stripes.png"))
    work = working_copy(rad)
    assert work.pixels.shape == (WORKING_MAX_SIDE, WORKING_MAX_SIDE // 2)
    assert work.original_size == (4096, 2048) and work.pixel_sha256() == rad.pixel_sha256()
    np.testing.assert_allclose(work.pixels, 0.5, atol=1e-6)   # an area average, not every other column
    assert working_copy(work) is work and working_copy(read_image(_save(Image.fromarray(a[:100]), tmp_path / "s.png"))).original_size is None
