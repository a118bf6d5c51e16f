"""`fedxray classify`: JSON per image, heatmaps, per-image errors and the exit code."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from fl.classes import CLASSES
from fl.modelfile import INTENDED_USE


def test_classifies_real_png_and_dicom_and_writes_heatmaps(fedxray, tiny_model_dir, shared_data, tmp_path):
    png = sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]
    dcm = shared_data / "dicom" / "RG1_UNCR.dcm"
    out = tmp_path / "heat"
    r = fedxray("classify", png, dcm, "--model", tiny_model_dir, "--heatmap-dir", out, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(png), str(dcm)]
    for row in rows:
        probs = row["probabilities"]
        assert list(probs) == list(CLASSES)
        assert abs(sum(probs.values()) - 1.0) < 1e-4
        assert row["predicted"] == max(probs, key=probs.get)
        assert row["model_version"] == "0.0.1-test"
        heat = Image.open(row["heatmap"])
        assert heat.mode == "RGB" and heat.text["Disclaimer"] == INTENDED_USE   # the app's own export
        assert row["warnings"] == [] or row["file"] == str(dcm)
    # The overlay keeps the original's width, with the caption strip (finding, model, intended use) below it
    # (DICOM: 1955 rows x 1841 columns; PIL gives width first).
    for row, size in ((rows[1], (1841, 1955)), (rows[0], Image.open(png).size)):
        heat = Image.open(row["heatmap"])
        assert heat.width == size[0] and heat.height > size[1]
        assert "top finding" in heat.text["Description"] and "0.0.1-test" in heat.text["Description"]


def test_unreadable_image_reports_and_the_rest_still_run(fedxray, tiny_model_dir, shared_data, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    good = sorted((shared_data / "cxr" / "Covid").glob("*.png"))[0]
    r = fedxray("classify", bad, good, "--model", tiny_model_dir, "--json")
    assert r.returncode == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[0]["file"] == str(bad) and "error" in rows[0] and rows[0]["error"]
    assert rows[1]["file"] == str(good) and "probabilities" in rows[1]


def test_human_output_names_model_and_intended_use(fedxray, tiny_model_dir, shared_data):
    png = sorted((shared_data / "cxr" / "Pneumonia-Viral").glob("*.png"))[0]
    r = fedxray("classify", png, "--model", tiny_model_dir)
    assert r.returncode == 0, r.stderr
    assert png.name in r.stdout
    assert "DEMONSTRATION" in r.stderr and "not a diagnosis" in r.stderr


def test_corrupt_model_is_refused_with_a_clear_message(fedxray, tiny_model_dir, shared_data, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    w = broken / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    png = sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]
    r = fedxray("classify", png, "--model", broken)
    assert r.returncode == 2
    assert "does not match its model card" in r.stderr


def test_matches_the_library_on_the_same_file(fedxray, tiny_model_dir, shared_data):
    from fl.inference import Classifier

    png = sorted((shared_data / "cxr" / "Pneumonia-Bacterial").glob("*.png"))[0]
    r = fedxray("classify", png, "--model", tiny_model_dir, "--json")
    cli = json.loads(r.stdout)["probabilities"]
    lib = Classifier(tiny_model_dir).classify(png).probabilities
    np.testing.assert_allclose([cli[c] for c in CLASSES], lib, atol=1e-5)


def test_json_carries_the_guardrail_warnings_the_app_shows(fedxray, tiny_model_dir, shared_data, tmp_path):
    """A CT slice, a colour photograph and a black image: each result carries the app's guardrail warnings."""
    from app.core import guardrails
    from fl.preprocess import read_image

    rng = np.random.default_rng(0)
    photo = tmp_path / "holiday.jpg"
    yy, xx = np.mgrid[0:480, 0:640]
    rgb = np.stack([xx * 255 // 640, yy * 255 // 480, 255 - xx * 255 // 640], axis=2) + rng.integers(0, 30, (480, 640, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(photo, quality=90)
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(black)
    ct = shared_data / "dicom" / "CT_small.dcm"
    normal = sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]
    r = fedxray("classify", ct, photo, black, normal, "--model", tiny_model_dir, "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["file"]: row for row in map(json.loads, r.stdout.splitlines())}
    for path, code in ((ct, "modality"), (photo, "colour"), (black, "uniform")):
        row = rows[str(path)]
        expected = [{"code": w.code, "message": w.message} for w in guardrails.check(read_image(path))]
        assert row["warnings"] == expected and code in [w["code"] for w in expected], row
        assert "probabilities" in row                              # still classified: warned, not hidden
    assert rows[str(normal)]["warnings"] == []
    human = fedxray("classify", ct, "--model", tiny_model_dir)
    assert "warning: The DICOM modality is CT" in human.stdout


def test_a_255_byte_file_name_keeps_its_result_and_gets_a_shorter_heatmap_name(fedxray, tiny_model_dir,
                                                                               shared_data, tmp_path):
    src = sorted((shared_data / "cxr" / "Covid").glob("*.png"))[0]
    long_name = tmp_path / ("ä" * 125 + "x.png")                   # 250 + 5 = 255 bytes in UTF-8
    assert len(long_name.name.encode()) == 255
    long_name.write_bytes(src.read_bytes())
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / long_name.name).write_bytes(src.read_bytes())           # the same name again: a distinct heatmap
    r = fedxray("classify", long_name, twin / long_name.name, "--model", tiny_model_dir, "--json",
                "--heatmap-dir", tmp_path / "heat")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(long_name), str(twin / long_name.name)]
    heatmaps = [row["heatmap"] for row in rows]
    assert len(set(heatmaps)) == 2
    for h in heatmaps:
        assert Image.open(h).width == Image.open(src).width
        assert len(h.rsplit("/", 1)[1].encode()) <= 200 and h.endswith(".heatmap.png")
    assert rows[0]["probabilities"] == rows[1]["probabilities"]


def test_a_folder_it_cannot_read_is_an_error_line_and_a_failure(fedxray, tiny_model_dir, shared_data, tmp_path):
    """Root reads every folder, so as root the command runs as the unprivileged user `nobody` (setpriv)."""
    import os
    import shutil
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0], locked / "a.png")
    good = tmp_path / "good.png"
    shutil.copy(sorted((shared_data / "cxr" / "Covid").glob("*.png"))[0], good)
    locked.chmod(0)
    try:
        args = ["classify", str(locked), str(good), "--model", str(tiny_model_dir), "--json"]
        if os.geteuid() != 0:
            r = fedxray(*args)
        else:
            if shutil.which("setpriv") is None:
                import pytest

                pytest.skip("running as root without setpriv: no way to make a folder unreadable")
            for p in (tmp_path, *tmp_path.parents):                   # pytest's folders are private (0700)
                if not p.stat().st_mode & 0o001:
                    p.chmod(p.stat().st_mode | 0o005)
            model = shutil.copytree(tiny_model_dir, tmp_path / "model")
            for p in (model, *model.iterdir()):
                p.chmod(0o755 if p.is_dir() else 0o644)
            args[args.index(str(tiny_model_dir))] = str(model)
            home = tmp_path / "nobody-home"
            home.mkdir()
            home.chmod(0o777)
            env = dict(os.environ, XDG_CONFIG_HOME=str(home), XDG_DATA_HOME=str(home), XDG_CACHE_HOME=str(home),
                       HOME=str(home))
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                "-m", "app", *args], capture_output=True, text=True, env=env, timeout=600)
    finally:
        locked.chmod(0o755)
    assert r.returncode == 1, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2, r.stderr[-3000:]
    assert rows[0]["file"] == str(locked) and "cannot be read" in rows[0]["error"], rows
    assert rows[1]["file"] == str(good) and "probabilities" in rows[1]


def test_a_decoder_failure_is_that_files_error_line(fedxray, tiny_model_dir, shared_data, tmp_path):
    """A DICOM whose transfer syntax UID is no known transfer syntax: the other files still get results."""
    import pydicom

    ds = pydicom.dcmread(shared_data / "dicom" / "RG1_UNCR.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9"
    odd = tmp_path / "odd-syntax.dcm"
    ds.save_as(odd, enforce_file_format=True)
    before, after = (sorted((shared_data / "cxr" / c).glob("*.png"))[0] for c in ("Normal", "Covid"))
    r = fedxray("classify", before, odd, after, "--model", tiny_model_dir, "--json")
    assert r.returncode == 1, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(before), str(odd), str(after)]
    assert "probabilities" in rows[0] and "probabilities" in rows[2]
    assert rows[1]["error"].startswith('Cannot open "odd-syntax.dcm"'), rows[1]
    assert "Traceback" not in r.stderr


def test_a_folder_gives_the_same_files_as_the_batch_window(fedxray, tiny_model_dir, shared_data, tmp_path):
    import shutil

    from app.core.batch import find_images

    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    shutil.copy(sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0], folder / "a.png")
    shutil.copy(shared_data / "dicom" / "RG1_UNCR.dcm", folder / "sub" / "IM0001")     # DICOM without suffix
    shutil.copy(shared_data / "dicom" / "CT_small.dcm", folder / "sub" / "IM0002.001")   # DICOM, numbered suffix
    shutil.copy(sorted((shared_data / "cxr" / "Covid").glob("*.png"))[0], folder / ".hidden" / "b.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "manifest.csv").write_text("filename,patient_id\n")
    r = fedxray("classify", folder, "--model", tiny_model_dir, "--json")
    assert r.returncode == 0, r.stderr
    files = [json.loads(line)["file"] for line in r.stdout.splitlines()]
    assert files == [str(p) for p in find_images(folder)]
    assert files == [str(folder / "a.png"), str(folder / "sub" / "IM0001"), str(folder / "sub" / "IM0002.001")]


def test_the_cli_runs_the_bundled_model_without_tensorflow(tmp_path):
    """`fedxray classify` on the bundled model (which has its LiteRT artefact) never imports TensorFlow."""
    import os
    import subprocess
    import sys

    import resources

    sample = resources.path("samples", "normal_kermany_IM-0003.png")
    code = ("import json, sys\nfrom app.cli import main\n"
            f"rc = main(['classify', {str(sample)!r}, '--json', '--heatmap-dir', {str(tmp_path / 'h')!r}])\n"
            "print(json.dumps({'rc': rc, 'modules': sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)}),"
            " file=sys.stderr)")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"),
               XDG_CACHE_HOME=str(tmp_path / "k"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    status = json.loads(r.stderr.strip().splitlines()[-1])
    assert status == {"rc": 0, "modules": []}, r.stderr
    row = json.loads(r.stdout)
    assert row["predicted"] in CLASSES and row["heatmap"].endswith("normal_kermany_IM-0003.heatmap.png")


def test_json_carries_guardrail_and_explanation_warnings(fedxray, shared_data, tmp_path):
    """The bundled model (LiteRT) on what the app would warn about: a CT slice, a colour photograph, a black
    image (guardrails), a case-report film whose heatmap sits on the bottom edge (explanation) and a clean one."""
    from tests.conftest import REPO

    photo = tmp_path / "holiday.jpg"
    yy, xx = np.mgrid[0:300, 0:400]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=2).astype(np.uint8)).save(photo)
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(black)
    edge = shared_data / "cxr" / "Covid" / "cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png"
    clean = shared_data / "cxr" / "Pneumonia-Bacterial" / "kermany_train_person1201_bacteria_3151.png"
    ct = shared_data / "dicom" / "CT_small.dcm"
    r = fedxray("classify", ct, photo, black, edge, clean, "--model", REPO / "resources" / "models" / "default",
                "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["file"]: row for row in map(json.loads, r.stdout.splitlines())}
    expected_guardrail = {str(ct): "modality", str(photo): "colour", str(black): "uniform"}
    for path, code in expected_guardrail.items():
        row = rows[path]
        assert code in [w["code"] for w in row["warnings"]], row["warnings"]
        assert row["outside_intended_use"] is True
        assert row["cautions"][0]["code"] == "outside_intended_use"
    e = rows[str(edge)]
    assert e["warnings"] == [] and e["outside_intended_use"] is False
    assert e["explanation_warning"] is True and e["attention"]["off_target"] > 0.5
    assert any(c["code"] == "explanation" and "edge of the image" in c["message"] for c in e["cautions"])
    c = rows[str(clean)]
    assert c["warnings"] == [] and c["explanation_warning"] is False and c["outside_intended_use"] is False
    assert c["finding"] in ("Normal", "Bacterial pneumonia", "Viral pneumonia", "COVID-19") or \
        c["finding"].startswith("uncertain: ")
    assert set(c["attention"]) == {"border", "outside_body", "off_target"}


def test_human_output_prints_guardrail_and_explanation_cautions(fedxray, shared_data):
    from tests.conftest import REPO

    edge = shared_data / "cxr" / "Covid" / "cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png"
    r = fedxray("classify", edge, shared_data / "dicom" / "CT_small.dcm", "--model",
                REPO / "resources" / "models" / "default")
    assert r.returncode == 0, r.stderr
    assert "caution: The model looked mostly at the edge of the image" in r.stdout
    assert "warning: The DICOM modality is CT" in r.stdout
