"""Guardrails on real DICOMs, synthetic DICOMs built from a real chest X-ray, and non-radiograph images."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.core import guardrails
from app.core.guardrails import patient_age_years
from fl.preprocess import read_image


def codes(rad):
    return [w.code for w in guardrails.check(rad)]


def chest_dicom(path, pixels_png, **tags):
    """A DX DICOM holding the pixels of a real chest PNG, with the given tags."""
    px = np.asarray(Image.open(pixels_png).convert("L"), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PatientID, ds.StudyDate = "TEST123", "20260110"
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_real_chest_cr_has_no_warning(dicom_dir):
    rad = read_image(dicom_dir / "RG1_UNCR.dcm")
    # Its tags: CR, CHEST, PA, born 1940-03-05, study 2004-08-26 (64 years), MONOCHROME1.
    assert codes(rad) == []


def test_real_ct_slice_is_flagged_as_not_a_radiograph(dicom_dir):
    rad = read_image(dicom_dir / "CT_small.dcm")
    warns = guardrails.check(rad)
    assert [w.code for w in warns] == ["modality"]        # its "000Y" age is an anonymisation placeholder
    assert "CT" in warns[0].message and "may be meaningless" in warns[0].message


@pytest.mark.parametrize(("tags", "expected"), [
    ({}, []),
    ({"ViewPosition": "LL"}, ["lateral"]),
    ({"ViewPosition": "LATERAL"}, ["lateral"]),
    ({"PatientAge": "012Y"}, ["paediatric"]),
    ({"PatientAge": "011M"}, ["paediatric"]),
    ({"PatientAge": "018Y"}, []),
    ({"PatientBirthDate": "20100111", "StudyDate": "20260110"}, ["paediatric"]),   # one day before 16th birthday
    ({"PatientBirthDate": "19800101"}, []),
    ({"BodyPartExamined": "HAND"}, ["body_part"]),
    ({"Modality": "MR", "BodyPartExamined": "HEAD"}, ["modality", "body_part"]),
    ({"Modality": "CR", "BodyPartExamined": "THORAX", "ViewPosition": "AP"}, []),
])
def test_synthetic_dicom_tags(tmp_path, cxr, tags, expected):
    f = chest_dicom(tmp_path / "x.dcm", cxr["Normal"], **tags)
    assert codes(read_image(f)) == expected


def test_paediatric_message_gives_the_age(tmp_path, cxr):
    w = guardrails.check(read_image(chest_dicom(tmp_path / "c.dcm", cxr["Normal"], PatientAge="011M")))[0]
    assert "11 months" in w.message and "under 18" in w.message


def test_age_parsing_by_hand():
    assert patient_age_years({"PatientAge": "016Y"}) == 16
    assert patient_age_years({"PatientAge": "011M"}) == pytest.approx(11 / 12)
    assert patient_age_years({"PatientAge": "003W"}) == pytest.approx(21 / 365.25)
    assert patient_age_years({"PatientAge": "010D"}) == pytest.approx(10 / 365.25)
    assert patient_age_years({"PatientAge": "000Y"}) is None
    assert patient_age_years({"PatientAge": "junk"}) is None
    assert patient_age_years({"PatientBirthDate": "20000229", "StudyDate": "20180228"}) == 17
    assert patient_age_years({"PatientBirthDate": "20000229", "StudyDate": "20180301"}) == 18
    assert patient_age_years({"PatientBirthDate": "20000101", "ContentDate": "20050601"}) == 5
    assert patient_age_years({"PatientBirthDate": "20000101"}) is None          # no date of the study
    assert patient_age_years({"PatientBirthDate": "20300101", "StudyDate": "20200101"}) is None


def test_colour_photo_is_flagged(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.stack([xx / w * 255, yy / h * 200 + 40, 255 - xx / w * 180], axis=-1)
    photo = np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(photo, "RGB").save(tmp_path / "holiday.jpg", quality=90)
    assert "colour" in codes(read_image(tmp_path / "holiday.jpg"))
    # the same picture in grayscale is not "colour"
    Image.fromarray(photo, "RGB").convert("L").save(tmp_path / "gray.png")
    assert "colour" not in codes(read_image(tmp_path / "gray.png"))


def test_colour_png_of_a_real_xray_screenshot_is_flagged(tmp_path, cxr):
    """A screenshot of an X-ray with a coloured heatmap pasted over it is not a radiograph."""
    gray = np.asarray(Image.open(cxr["Covid"]).convert("RGB")).copy()
    gray[40:180, 40:200, 0] = 255
    gray[40:180, 40:200, 2] = 0
    Image.fromarray(gray).save(tmp_path / "screenshot.png")
    assert "colour" in codes(read_image(tmp_path / "screenshot.png"))


def test_document_uniform_tiny_and_elongated_images(tmp_path):
    doc = Image.new("L", (600, 800), 255)
    d = ImageDraw.Draw(doc)
    for y in range(40, 760, 24):
        d.text((40, y), "Lorem ipsum dolor sit amet, consectetur adipiscing elit " * 2, fill=0)
    doc.save(tmp_path / "letter.png")
    assert codes(read_image(tmp_path / "letter.png")) == ["not_radiograph"]

    Image.new("L", (512, 512), 128).save(tmp_path / "flat.png")
    assert codes(read_image(tmp_path / "flat.png")) == ["uniform"]

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(30, 220, (64, 64), dtype=np.uint8)).save(tmp_path / "icon.png")
    assert codes(read_image(tmp_path / "icon.png")) == ["small"]

    Image.fromarray(rng.integers(30, 220, (200, 900), dtype=np.uint8)).save(tmp_path / "strip.png")
    assert codes(read_image(tmp_path / "strip.png")) == ["aspect"]


def test_real_chest_xrays_raise_no_image_warning(shared_data):
    files = sorted((shared_data / "cxr").glob("*/*.png"))[::6]   # every 6th of the 673 images, all classes
    assert len(files) > 100
    flagged = {f.name: codes(read_image(f)) for f in files}
    assert {k: v for k, v in flagged.items() if v} == {}


def test_colour_dicom_is_flagged(tmp_path, cxr):
    f = chest_dicom(tmp_path / "rgb.dcm", cxr["Normal"])
    ds = pydicom.dcmread(f)
    px = np.repeat(np.frombuffer(ds.PixelData, np.uint8).reshape(ds.Rows, ds.Columns)[..., None], 3, axis=2).copy()
    px[..., 0] = 255 - px[..., 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = px.tobytes()
    ds.save_as(f, enforce_file_format=True)
    assert "colour" in codes(read_image(f))
