"""The built one-folder bundle (dist/fedxray, made by `bash installer/build.sh`) against the source tree.

Prepare: a throw-away user profile (XDG folders), offscreen Qt; the source tree's own `fedxray classify` run
    on the same images gives the expected probabilities.
Execute: the frozen `fedxray classify`, its hidden `--bundle-selfcheck` (opens the real window, exports the
    PDF report), Flower's commands, and a one-round federated run with two frozen workstations.
Assert: the same probabilities (1e-5), the window shown with a result from the bundled model, a PDF, resources
    found through sys._MEIPASS, the keyring, the federated run finished.

CI builds the bundle first (`installer/bootstrap.sh test`, only when dist/fedxray is not built from the same
source) and sets FEDXRAY_REQUIRE_BUNDLE=1, so a missing bundle fails there; elsewhere these tests are skipped when
there is none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

BUNDLE = REPO / "dist" / "fedxray" / "fedxray"
SAMPLE = REPO / "resources" / "samples" / "bacterial_kermany_person126.png"
DICOM = ("RG1_UNCR.dcm", "RG1_J2KI.dcm")  # uncompressed, and JPEG 2000 (needs the bundled decoders)
FLOWER_COMMANDS = ("flower-supernode", "flower-superexec", "flwr-clientapp")

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.skipif(not BUNDLE.exists() and os.environ.get("FEDXRAY_REQUIRE_BUNDLE") != "1",
                       reason=f"no built bundle at {BUNDLE} (bash installer/build.sh)"),
]


def test_the_bundle_is_built():
    """With FEDXRAY_REQUIRE_BUNDLE=1 (CI) a missing bundle is a failure that says so, not a skip."""
    assert BUNDLE.exists(), f"no built bundle at {BUNDLE}: installer/bootstrap.sh test builds it (installer/build.sh)"


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> dict[str, str]:
    """Environment of a user who never ran FedXray: the active model is the bundled default."""
    home = tmp_path_factory.mktemp("profile")
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               XDG_CACHE_HOME=str(home / "cache"), QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2",
               TF_ENABLE_ONEDNN_OPTS="0")  # fmt: skip
    return env


def classify(command: list[str], images: list[Path], env: dict[str, str]) -> dict[str, dict]:
    out = subprocess.run([*command, "classify", "--json", *map(str, images)], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return {Path(r["file"]).name: r for r in map(json.loads, out.stdout.splitlines())}


@pytest.fixture(scope="module")
def classified(profile, shared_data) -> tuple[dict, dict]:
    """(source tree, bundle) records per file name, for the sample PNG and the DICOM files."""
    images = [SAMPLE, *(shared_data / "dicom" / name for name in DICOM)]
    return classify([sys.executable, "-m", "app"], images, profile), classify([str(BUNDLE)], images, profile)


def selfcheck(report: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    out = subprocess.run([str(BUNDLE), "--bundle-selfcheck", str(report), *args], env=env, capture_output=True,
                         text=True, timeout=400)  # fmt: skip
    assert report.exists(), out.stdout[-2000:] + out.stderr[-3000:]
    return out, json.loads(report.read_text())


@pytest.fixture(scope="module")
def window(profile, tmp_path_factory) -> dict:
    """The self-check report of the app opened on the sample image, its PDF report exported."""
    out, report = selfcheck(tmp_path_factory.mktemp("gui") / "report.json", "--pdf", str(SAMPLE), env=profile)
    assert out.returncode == 0, (report, out.stderr[-3000:])
    return report


@pytest.mark.parametrize("name", [SAMPLE.name, *DICOM])
def test_frozen_classify_gives_the_probabilities_of_the_source_tree(classified, name):
    source, bundle = classified
    expected, actual = source[name], bundle[name]
    assert "error" not in actual, actual
    assert actual["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
    assert actual["predicted"] == expected["predicted"]
    assert (actual["model"], actual["model_version"]) == (expected["model"], expected["model_version"])
    assert sum(actual["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_window_opens_offscreen_and_shows_the_result(window, classified):
    shown = window["window"]
    assert window["ok"] and not window["timed_out"] and window["qt_platform"] == "offscreen"
    assert shown["visible"] and shown["title"] == SAMPLE.name
    assert shown["model_state"] == "ready" and shown["model_status"].startswith("Ready: ")
    assert shown["document_state"] == "result"
    expected = classified[0][SAMPLE.name]["probabilities"]
    assert shown["probabilities"] == pytest.approx(expected, abs=1e-5)

    from PIL import Image

    with Image.open(window["screenshot"]) as img:
        assert list(img.size) == shown["size"]
        assert len(img.convert("L").resize((64, 64)).getcolors(4096)) > 16  # drawn, not a blank grab


def test_pdf_report_is_exported_from_the_bundle(window):
    pdf = Path(window["pdf"]["path"]).read_bytes()
    assert window["pdf"]["is_pdf"] and pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(pdf) > 20_000  # text, the radiograph and its overlay
    assert b"Helvetica" in pdf


def test_bundled_model_and_samples_are_found_through_meipass(window, profile):
    internal = BUNDLE.parent / "_internal"
    assert window["frozen"] and Path(window["meipass"]) == internal
    assert Path(window["resources_root"]) == internal / "resources"
    assert Path(window["default_model_dir"]) == internal / "resources" / "models" / "default"
    assert Path(window["window"]["model_dir"]) == Path(window["default_model_dir"])
    assert (internal / "resources" / "samples" / SAMPLE.name).read_bytes() == SAMPLE.read_bytes()

    out = subprocess.run([str(BUNDLE), "models", "list"], env=profile, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    (active,) = [line for line in out.stdout.splitlines() if line.startswith("*")]
    assert active.split()[1] == "default" and active.rstrip().endswith("bundled")


@pytest.mark.parametrize("command", FLOWER_COMMANDS)
def test_flower_commands_are_the_app_under_their_own_names(command, profile):
    path = BUNDLE.parent / command
    assert path.resolve() == BUNDLE.resolve()
    out = subprocess.run([str(path), "--help"], env=profile, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"usage: {command}" in out.stdout


def test_keyring_of_the_desktop_session_works_in_the_bundle(secret_service, profile, tmp_path):
    env = {**profile, **secret_service.env()}
    out, report = selfcheck(tmp_path / "report.json", "--keyring", env=env)
    assert out.returncode == 0, (report, out.stderr[-3000:])
    assert report["keyring"] == {"backend": "keyring.backends.SecretService.Keyring", "ok": True, "probed": True}


def test_without_a_keyring_the_report_says_so(profile, tmp_path):
    env = {k: v for k, v in profile.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    out, report = selfcheck(tmp_path / "report.json", env=env)
    assert out.returncode == 0, (report, out.stderr[-3000:])  # the app itself runs without a keyring
    assert report["keyring"]["ok"] is False and "No keyring is available" in report["keyring"]["error"]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_frozen_workstations_take_part_in_a_federated_run(shared_data, tmp_path):
    """A SuperLink from the source tree (TLS), two frozen `fedxray federate` with no Python on PATH."""
    from tests.fl.flower_support import (
        Processes,
        flower_env,
        free_port,
        make_sites,
        make_test_ca,
        superlink_cmd,
        wait_port,
        write_flwr_config,
    )
    from tests.support.launch import start_run

    share = dict.fromkeys(("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"), 0.5)
    sites = make_sites(shared_data / "cxr", tmp_path / "data", per_class=4, seed=1,
                       shares={"site-a": share, "site-b": share})  # fmt: skip
    tls = make_test_ca(tmp_path / "pki")
    procs = Processes(tmp_path / "logs")
    record, port = tmp_path / "record", free_port()
    try:
        procs.start("superlink", superlink_cmd(port, tls=tls), cwd=tmp_path,
                    env=flower_env(FEDXRAY_RECORD_DIR=str(record), FLWR_HOME=str(tmp_path / "superlink")))
        wait_port(port)
        for name in sites:
            home = tmp_path / f"workstation-{name}"
            env = {**flower_env(), "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(home / "config"),
                   "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}  # fmt: skip
            procs.start(name, [str(BUNDLE), "federate", "--superlink", f"127.0.0.1:{port}",
                               "--root-certificates", str(tls["ca"]), "--data", str(sites[name])], env=env)
        write_flwr_config(tmp_path / "flwr", port, ca=tls["ca"])
        run_id = start_run(tmp_path / "flwr", {"arch": "tiny", "input-size": 64, "batch-size": 8,
                                                "local-epochs": 1, "min-sites": 2, "num-server-rounds": 1,
                                                "round-timeout": 400.0})  # fmt: skip
        path = record / f"run-{run_id}" / "run.json"

        def finished() -> bool:
            return path.exists() and json.loads(path.read_text())["status"] != "running"

        deadline = time.monotonic() + 450
        while time.monotonic() < deadline and not finished():
            time.sleep(2)
        logs = "\n".join(f"--- {n}\n{procs.log(n)[-2000:]}" for n in procs.procs)
        assert path.exists(), logs
        run = json.loads(path.read_text())
        assert run["status"] == "finished", logs
        assert run["summary"]["rounds"]["1"] == {"num_sites": 2, "sampled": 2, "failures": 0}
        for name in sites:
            assert "the central asks this workstation to train" in procs.log(name), logs
            status = json.loads((tmp_path / f"workstation-{name}" / "data" / "fedxray" / "federation-status.json")
                                .read_text())  # fmt: skip
            assert status["run_id"] == run_id and status["messages_sent"] == 2 and status["restarts"] == 0
    finally:
        procs.stop_all()
