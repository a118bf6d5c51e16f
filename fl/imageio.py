"""Reading radiographs from files or bytes: checks, format sniffing, Pillow decoding to grayscale."""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fl.formats import SUFFIX_FORMAT, has_preamble, is_image_file, looks_like_raw_dicom
from fl.radiograph import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    ImageReadError,
    Radiograph,
    check_dimensions,
    detail,
    fail,
)

FORMATS = "PNG, JPEG, BMP, TIFF or DICOM"
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
# Recognisable files FedXray does not read, for a precise message.
_OTHER_KINDS = ((b"GIF8", "GIF"), (b"%PDF", "PDF document"), (b"PK\x03\x04", "ZIP archive"),
                (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"), (b"\x1f\x8b", "gzip archive"),
                (b"{\\rtf", "RTF document"), (b"\xd0\xcf\x11\xe0", "Microsoft Office document"))


def walk_images(folder: str | os.PathLike, *, recursive: bool = True,
                on_error: Callable[[Path, ImageReadError], None] | None = None) -> Iterator[tuple[Path, bool]]:
    """Every visible file below `folder` (hidden files and folders skipped, in sorted order) and whether it is an
    image. A folder that cannot be listed raises ImageReadError (`folder` itself) or goes to `on_error`."""
    folder = Path(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (NotADirectoryError, FileNotFoundError):
        raise fail(folder.name or str(folder), "this folder does not exist, or is not a folder",
                   "Check the path, and that the drive or network share holding it is connected.",
                   source=str(folder)) from None
    except OSError as exc:
        error = fail(folder.name or str(folder), f"the folder cannot be read ({exc.strerror or exc})",
                     "Ask your IT administrator for read access, or copy the images to a folder you can read.",
                     source=str(folder))
        if on_error is None:
            raise error from None
        on_error(folder, error)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)  # as os.walk: no loops through linked folders
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from walk_images(path, recursive=True, on_error=on_error or _raise)
        else:
            yield path, is_image_file(path)


def _raise(folder: Path, error: ImageReadError) -> None:
    raise error


def find_images(folder: str | os.PathLike, *, recursive: bool = True,
                on_error: Callable[[Path, ImageReadError], None] | None = None) -> list[Path]:
    """The image files below `folder` in sorted order (see walk_images)."""
    return [p for p, image in walk_images(folder, recursive=recursive, on_error=on_error) if image]


def read_image(source: str | os.PathLike | bytes, *, name: str | None = None) -> Radiograph:
    """Decode a PNG, JPEG, BMP, TIFF or DICOM file (path or bytes) into a grayscale Radiograph.

    Every unusable input raises ImageReadError with a message a clinician can act on; the format is
    recognised from the content, not the file name. ``name`` labels bytes input (and overrides the label
    of a path) in messages.
    """
    data, label, shown = _read_source(source, name)
    kind = _sniff(data)
    try:
        if kind == "DICOM" or (kind is None and looks_like_raw_dicom(data)):
            # pydicom (and its decoders) load only when a DICOM file comes
            from fl.dicomio import decode_dicom

            return decode_dicom(data, name=shown, source=label)
        if kind is None:
            raise _not_an_image(data, shown, label)
        return _decode_pillow(data, kind, shown, label)
    except ImageReadError:
        raise
    except MemoryError:
        raise fail(shown, "there is not enough memory to decode this image", "Close other programs and try again.",
                   source=label) from None
    except Exception as exc:  # noqa: BLE001 - a decoder's own failure is this file's error, never the caller's
        raise fail(shown, f"it could not be decoded ({type(exc).__name__}: {detail(exc)})",
                   "Export the image again, or send the file to IT support.", source=label) from exc


def _read_source(source, name: str | None) -> tuple[bytes, str, str]:
    """The file's bytes, the label kept as Radiograph.source, and the short name used in messages."""
    if isinstance(source, bytes | bytearray | memoryview):
        shown = name or "the image"
        data = bytes(source)
        if not data:
            raise fail(shown, "the image data is empty (0 bytes)", "Export or copy the image again.",
                       source=name)
        if len(data) > MAX_FILE_BYTES:
            raise _too_big(shown, len(data), name)
        return data, name or "<image data>", shown
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"read_image expects a path or bytes, not {type(source).__name__}")
    path = Path(os.fspath(source))
    label, shown = str(path), name or path.name or str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise fail(shown, "this is a folder, not an image file", "Open one of the image files inside it.",
                       source=label)
        if not stat.S_ISREG(info.st_mode):
            raise fail(shown, "this is not a regular file (it is a device, pipe or socket)",
                       "Choose an image file.", source=label)
        if info.st_size > MAX_FILE_BYTES:
            raise _too_big(shown, info.st_size, label)
        with open(path, "rb") as fh:
            data = fh.read(info.st_size + 1)                      # +1 notices a file still being written
    except FileNotFoundError:
        raise fail(shown, "the file does not exist", "Check the file name, and that the drive or network "
                                                     "share holding it is connected.", source=label) from None
    except PermissionError:
        raise fail(shown, "permission denied: your account is not allowed to read this file",
                   "Copy it to a folder you can read, or ask your IT administrator for access.",
                   source=label) from None
    except IsADirectoryError:
        raise fail(shown, "this is a folder, not an image file", "Open one of the image files inside it.",
                   source=label) from None
    except OSError as exc:
        raise fail(shown, f"the file could not be read from disk ({exc.strerror or exc})",
                   "Check the drive or network connection and try again.", source=label) from None
    if not data:
        raise fail(shown, "the file is empty (0 bytes), so the copy or export did not complete",
                   "Export the image again from the PACS or the original source.", source=label)
    if len(data) > info.st_size:
        raise fail(shown, "the file changed while it was being read (it may still be copying)",
                   "Wait until the copy has finished and try again.", source=label)
    return data, label, shown


def _too_big(shown: str, size: int, label: str | None) -> ImageReadError:
    return fail(shown, f"the file is {size / 2**20:.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MB "
                       "FedXray accepts for a single radiograph",
                "Export the single radiograph, not a whole study or archive.", source=label)


def _sniff(data: bytes) -> str | None:
    """The format from the file's first bytes: "DICOM", a Pillow format name, or None."""
    if has_preamble(data):
        return "DICOM"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data.startswith(b"BM") and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def _not_an_image(data: bytes, shown: str, label: str) -> ImageReadError:
    suffix_format = SUFFIX_FORMAT.get(Path(shown).suffix.lower())
    hint = f", although its name ends in '{Path(shown).suffix}'" if suffix_format else ""
    for magic, kind in _OTHER_KINDS:
        if data.startswith(magic):
            return fail(shown, f"this is a {kind} file{hint}; FedXray reads {FORMATS} images",
                        "Export or convert the radiograph to one of these formats.", source=label)
    if _is_text(data[:2048]):
        return fail(shown, f"this file contains text, not an image{hint}",
                    f"Choose the radiograph itself ({FORMATS}).", source=label)
    return fail(shown, f"the content is not a {FORMATS} image{hint}, or the file is damaged",
                f"Export the radiograph again as {FORMATS}.", source=label)


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3                         # only a character cut at the end
    return True


def _open(data: bytes, kind: str, shown: str, label: str) -> Image.Image:
    """Parse the header only (Pillow decodes lazily) and refuse oversized images before any decoding."""
    try:
        # Pillow warns between 89 and 179 megapixels and raises above; both become ImageReadError.
        # (catch_warnings is process-wide; harmless here, the filter only turns this warning into an error.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise fail(shown, f"the file claims an image of more than {MAX_PIXELS / 1e6:.0f} megapixels, far larger "
                          "than any radiograph, so it was not decoded", "The file is damaged or is not a "
                   "radiograph; use the original export from the PACS or modality.", source=label) from None
    except Exception as exc:
        raise _damaged(shown, kind, exc, label) from None
    check_dimensions(image.width, image.height, shown, source=label)
    return image


def _damaged(shown: str, kind: str, exc: BaseException, label: str) -> ImageReadError:
    return fail(shown, f"the {kind} file is damaged or incomplete (for example cut short while copying) "
                       f"and cannot be decoded (technical detail: {detail(exc)})",
                "Copy or export the image again.", source=label)


def _decode_pillow(data: bytes, kind: str, shown: str, label: str) -> Radiograph:
    image = _open(data, kind, shown, label)
    try:
        image.load()
        if image.getexif().get(0x0112, 1) in range(2, 9):       # EXIF orientation: show as the camera saw it
            image = ImageOps.exif_transpose(image)
        pixels = to_gray(image)
    except MemoryError:
        raise fail(shown, "there is not enough memory to decode this image", "Close other programs and try "
                                                                             "again.", source=label) from None
    except Exception as exc:
        raise _damaged(shown, kind, exc, label) from None
    return Radiograph(pixels=pixels, source=label, format=kind)


def to_gray(image: Image.Image) -> np.ndarray:
    """A Pillow image as float32 (H, W) in [0, 1]: ITU-R 601 luma for colour, alpha composited onto black.

    8-bit values are divided by 255. Higher bit depths (16-bit PNG/TIFF) are divided by the full scale of
    the smallest of 8/10/12/14/16 bits that holds the maximum value, so 12-bit data stored unscaled in a
    16-bit file is not shown almost black; signed, 32-bit or float data outside [0, 1] is stretched min-max.
    """
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode == "L":
        return np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    if mode.startswith("I") or mode == "F":
        return _scale_deep(np.asarray(image))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "RGBa", "RGBX"):
        image = image.convert("RGBA" if mode != "RGBX" else "RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode not in ("LA", "RGB", "RGBA"):
        image = image.convert("RGB")                              # CMYK, YCbCr, LAB, HSV
    a = np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
    if image.mode == "LA":
        return a[..., 0] * a[..., 1]
    gray = a[..., 0] * np.float32(0.299) + a[..., 1] * np.float32(0.587) + a[..., 2] * np.float32(0.114)
    if image.mode == "RGBA":
        gray *= a[..., 3]
    return np.clip(gray, 0.0, 1.0, out=gray)


def _scale_deep(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return a
    else:
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 65535:
            bits = next(b for b in (8, 10, 12, 14, 16) if hi <= 2**b - 1)
            return a.astype(np.float32) * np.float32(1 / (2**bits - 1))
    if hi <= lo:
        return np.zeros(a.shape, np.float32)
    return ((a.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
