"""What a file holds, from its name and first bytes: the image suffixes FedXray takes and DICOM sniffing.

The one home of these facts for the batch window, `fedxray classify`, the labelled set and data sets (no pydicom
here: a PNG is recognised and read without loading it).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF", ".dcm": "DICOM", ".dicom": "DICOM"}
# The one list of file suffixes FedXray takes for images (batch, labelled set, data sets); other files are taken
# when their content is DICOM (is_dicom_file), as PACS exports often have no suffix or a number.
IMAGE_SUFFIXES = frozenset(SUFFIX_FORMAT)
_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
        b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
        b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}


def has_preamble(data: bytes) -> bool:
    """True for a DICOM Part 10 file: 128-byte preamble followed by b"DICM"."""
    return data[128:132] == b"DICM"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file at `path` starts like DICOM (Part 10 preamble, or a raw little-endian data set)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return has_preamble(head) or looks_like_raw_dicom(head)


def looks_like_raw_dicom(data: bytes) -> bool:
    """True when a file without preamble starts like a little-endian DICOM data set (group 0002 or 0008)."""
    if len(data) < 8:
        return False
    group, element = struct.unpack_from("<HH", data)
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return False
    if data[4:6] in _VRS:                                  # explicit VR
        return True
    return struct.unpack_from("<I", data, 4)[0] <= 1024    # implicit VR: a short first element


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file FedXray would read as an image: an image suffix, or DICOM content."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(path)
