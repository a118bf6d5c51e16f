"""Runs and model versions end to end on loopback: `fedxray-central models|run`, `fedxray models update|rollback`.

Real processes: `fedxray-central serve` (TLS, node auth, SQLite), a workstation enrolled through `fedxray enroll`
with a real Secret Service, the real SuperLink running a stand-in Flower app (written below; it records through
fl.recorder exactly as FedXray's ServerApp does, without TensorFlow, so a run takes seconds). Model versions are
uploaded through the service-credential routes as the ServerApp's recorder does. Tests run in file order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from central import pki
from fl.classes import CLASSES
from tests.support.central import BIN, CentralProcess, Workstation, wait_for

pytestmark = pytest.mark.e2e
VERSIONS = ("run1-round1", "run1-round2")


# ---------------------------------------------------------------- helpers
def make_version(src: Path, dest: Path, version: str, *, scale: float, metrics: dict) -> Path:
    """A model folder like the ServerApp saves: the tiny network's weights scaled (so each version differs)."""
    from safetensors.numpy import load_file, save_file

    dest.mkdir(parents=True)
    tensors = {k: (v * scale).astype(v.dtype) if v.dtype.kind == "f" else v
               for k, v in load_file(str(src / "weights.safetensors")).items()}  # fmt: skip
    save_file(tensors, str(dest / "weights.safetensors"))
    data = (dest / "weights.safetensors").read_bytes()
    card = json.loads((src / "card.json").read_text())
    card.update(name="FedXray federated", version=version, demo=False, metrics=metrics,
                federation={"run": "run1", "round": int(version[-1]), "participating_sites": 2})  # fmt: skip
    card["weights"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (dest / "card.json").write_text(json.dumps(card, indent=2))
    return dest


def upload(client, model_dir: Path, *, run_id: int, server_round: int, is_best: bool) -> dict:
    """What fl.recorder.HttpRecorder.model_version does: record, upload the weights file, mark the best."""
    card = json.loads((model_dir / "card.json").read_text())
    r = client.post("/api/v1/models", json={"version": card["version"], "card": card, "run_id": run_id,
                                            "server_round": server_round})  # fmt: skip
    assert r.status_code == 201, r.text
    r = client.put(f"/api/v1/models/{card['version']}/file", content=(model_dir / "weights.safetensors").read_bytes(),
                   headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200, r.text
    if is_best:
        assert client.patch(f"/api/v1/models/{card['version']}", json={"is_best": True}).status_code == 200
    return r.json()


def ws_json(ws: Workstation, *args: str, code: int = 0, timeout: float = 240) -> dict:
    result = ws.fedxray(*args, "--json", timeout=timeout)
    assert result.returncode == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def active(ws: Workstation) -> dict:
    return next(m for m in ws_json(ws, "models", "list") if m["active"])


def classify_version(ws: Workstation, image: Path) -> str:
    result = ws.fedxray("classify", str(image), "--json", timeout=240)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[0])["model_version"]


def db(central: CentralProcess) -> sqlite3.Connection:
    return sqlite3.connect(central.home / "central.db", timeout=30, isolation_level=None)


def stored_file(central: CentralProcess, version: str) -> Path:
    with db(central) as con:
        (model_id,) = con.execute("SELECT id FROM model_versions WHERE version = ?", (version,)).fetchone()
    return central.home / "models" / f"{model_id:08d}.bin"


def hand_metrics(model_dir: Path, samples: list[tuple[Path, int]]) -> dict:
    """Accuracy, macro-F1 and per-class sensitivity computed here, from the model's own predictions."""
    from fl.modelfile import load_model
    from fl.preprocess import load_for_model

    model, card = load_model(model_dir)
    batch = np.stack([load_for_model(p, input_size=card.input_size, scaling=card.scaling) for p, _ in samples])
    predicted = np.asarray(model(batch, training=False)).argmax(axis=1)
    truth = np.array([label for _, label in samples])
    f1s, sens = [], {}
    for c, name in enumerate(CLASSES):
        tp = int(np.sum((predicted == c) & (truth == c)))
        fn = int(np.sum((predicted != c) & (truth == c)))
        fp = int(np.sum((predicted == c) & (truth != c)))
        sens[name] = tp / (tp + fn)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(predicted == truth)), "macro_f1": float(np.mean(f1s)), "sensitivity": sens}


STANDIN_PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "standin"
version = "0.1.0"
description = "Stand-in for FedXray's Flower app: records like the real ServerApp, trains nothing"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "fedxray-tests"

[tool.flwr.app.components]
serverapp = "standin.server:app"
clientapp = "standin.server:client"

[tool.flwr.app.config]
num-server-rounds = 1
min-sites = 2
local-epochs = 1
round-timeout = 3600.0
strategy = "fedavg"
proximal-mu = 0.0
central-run-id = 0
sleep = 0.0
round-sleep = 0.0
model-dir = ""
start-round = 0
initial-model = ""
best-model = ""
"""

STANDIN_SERVER = '''
"""Records a run as fl.server_app does (fl.recorder from the environment the central gives the SuperLink)."""
import json, os, shutil, time
from pathlib import Path

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fl.recorder import open_recorder

app = ServerApp()
client = ClientApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    seen = {k: v for k, v in os.environ.items() if k.startswith("FEDXRAY_")}
    seen.update(run_config=dict(cfg), flower_run_id=context.run_id)
    out = Path(os.environ["FEDXRAY_RECORD_DIR"]) / f"standin-{cfg['central-run-id']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(seen))
    recorder, local = open_recorder(central_run_id=int(cfg["central-run-id"]))
    label = recorder.run_started(flower_run_id=context.run_id, num_rounds=cfg["num-server-rounds"],
                                 min_sites=cfg["min-sites"], config=dict(cfg))
    for r in range(int(cfg["start-round"]) + 1, int(cfg["num-server-rounds"]) + 1):
        time.sleep(float(cfg["round-sleep"]))
        recorder.round_finished(server_round=r, num_sites=2,
                                train_metrics={"num_examples": 40, "train_loss": 1.0 / r, "train_accuracy": 0.25 * r},
                                evaluate_metrics={"loss": 2.0 / r, "accuracy": 0.2 * r, "macro_f1": 0.1 * r},
                                server_metrics=None)
        if cfg["model-dir"]:
            version = f"{label}-round{r}"
            target = local.models_dir() / version
            shutil.copytree(cfg["model-dir"], target)
            card = json.loads((target / "card.json").read_text())
            card["version"] = version
            (target / "card.json").write_text(json.dumps(card))
            recorder.model_version(version=version, model_dir=target, card=card, server_round=r, is_best=r == 1)
    time.sleep(float(cfg["sleep"]))
    recorder.run_finished(status="finished")
'''


# ---------------------------------------------------------------- module fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs-models")


@pytest.fixture(scope="module")
def central(root, secret_service):
    proc = CentralProcess(root / "home").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def ws(root, central) -> Workstation:
    station = Workstation(root / "ws", "ws")
    token = central.create_token("St Mary")
    result = station.fedxray("enroll", "--central", central.url, "--token", token["token"],
                             "--ca-fingerprint", token["ca_fingerprint"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return station


@pytest.fixture(scope="module")
def service(central):
    with central.client(central.credential("service")) as client:
        yield client


@pytest.fixture(scope="module")
def versions(root, tiny_model_dir) -> dict[str, Path]:
    return {
        VERSIONS[0]: make_version(tiny_model_dir, root / "v1", VERSIONS[0], scale=1.0,
                                  metrics={"validation": {"accuracy": 0.5, "macro_f1": 0.4, "loss": 1.3}}),
        VERSIONS[1]: make_version(tiny_model_dir, root / "v2", VERSIONS[1], scale=0.5,
                                  metrics={"validation": {"accuracy": 0.6, "macro_f1": 0.5, "loss": 1.2},
                                           "test": {"accuracy": 0.625, "macro_f1": 0.55, "loss": 1.1}}),
    }  # fmt: skip


@pytest.fixture(scope="module")
def image(shared_data) -> Path:
    return sorted((shared_data / "cxr" / "Normal").glob("*.png"))[0]


@pytest.fixture(scope="module")
def standin_app(root) -> Path:
    app = root / "standin-app"
    (app / "standin").mkdir(parents=True)
    (app / "pyproject.toml").write_text(STANDIN_PYPROJECT)
    (app / "standin" / "__init__.py").write_text("")
    (app / "standin" / "server.py").write_text(textwrap.dedent(STANDIN_SERVER))
    return app


# ---------------------------------------------------------------- the store's rules (no service needed)
def test_release_problem_names_what_is_wrong(tiny_model_dir):
    from central.crud.models import release_problem
    from central.db.models import ModelVersion

    card = json.loads((tiny_model_dir / "card.json").read_text())
    good = dict(card, version="v1")

    def problem(card=good, sha=card["weights"]["sha256"], size=card["weights"]["bytes"], version="v1"):
        return release_problem(ModelVersion(version=version, card=card, file_sha256=sha, file_size=size))

    assert problem() is None
    assert "no file yet" in problem(sha=None)
    assert "not usable" in problem(card={"name": "x"})
    assert "says version 'v1', not 'v2'" in problem(version="v2")
    assert "FedXray expects" in problem(card=dict(good, classes=["a", "b"]))
    for name in ("../weights.safetensors", "sub/w.safetensors", ".hidden", "", "my weights.safetensors"):
        bad = dict(good, weights=dict(good["weights"], file=name))
        assert "plain file name" in problem(card=bad), name
    assert "upload the matching file" in problem(sha="f" * 64)
    assert "bytes of weights" in problem(size=1)


def test_a_stopped_run_stays_stopped(tmp_path):
    from central.crud import runs as runs_crud
    from central.db.engine import make_engine, migrate, session_factory, sqlite_url, transaction

    engine = make_engine(sqlite_url(tmp_path / "central.db"))
    migrate(engine)
    with transaction(session_factory(engine)) as s:
        run = runs_crud.create_run(session=s, num_rounds=2, min_sites=1, config={})
        runs_crud.update_run(session=s, run=run, status="stopped", message="Stopped by the admin")
        stopped_at = run.finished_at
        # The ServerApp, killed by the stop, may still report an ending: it does not undo the stop.
        runs_crud.update_run(session=s, run=run, status="failed", message="KeyboardInterrupt")
        assert (run.status, run.finished_at, run.message) == ("stopped", stopped_at, "Stopped by the admin")
    engine.dispose()


# ---------------------------------------------------------------- model versions and release
def test_update_before_any_release_is_refused(ws):
    out = ws_json(ws, "models", "update", "--yes", code=1)
    assert out["ok"] is False and "has not released a model yet" in out["error"]
    assert "not changed" in out["error"]


def test_versions_uploaded_with_the_service_credential_are_listed(central, service, versions):
    run = service.post("/api/v1/runs", json={"num_rounds": 2, "min_sites": 2}).json()
    for n, version in enumerate(VERSIONS, start=1):
        upload(service, versions[version], run_id=run["id"], server_round=n, is_best=n == 2)
    listed = central.admin_json("models", "list")
    assert [m["version"] for m in listed] == list(reversed(VERSIONS))  # newest first
    v2, v1 = listed
    assert (v1["run_id"], v1["server_round"], v1["is_best"], v1["release"]) == (run["id"], 1, False, None)
    assert v1["metrics"] == {"source": "validation", "accuracy": 0.5, "macro_f1": 0.4, "loss": 1.3,
                             "num_examples": None}  # fmt: skip
    assert (v2["server_round"], v2["is_best"], v2["participating_sites"]) == (2, True, 2)
    assert v2["metrics"]["source"] == "test" and v2["metrics"]["accuracy"] == 0.625  # the server test set first
    data = (versions[VERSIONS[1]] / "weights.safetensors").read_bytes()
    assert (v2["file_sha256"], v2["file_size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    text = central.admin("models", "list").stdout
    assert "VERSION" in text and "0.625" in text and "run1-round1" in text


def test_release_refuses_unknown_or_incomplete_versions(central, service, versions):
    for bad in ("no-such-version", "../etc"):
        result = central.admin("models", "release", bad, check=False)
        assert result.returncode == 1
        assert f"There is no model version {bad!r}" in result.stderr and "nothing was released" in result.stderr
    card = json.loads((versions[VERSIONS[0]] / "card.json").read_text())
    card["version"] = "no-file"
    assert service.post("/api/v1/models", json={"version": "no-file", "card": card}).status_code == 201
    result = central.admin("models", "release", "no-file", check=False)
    assert result.returncode == 1 and "has no file yet" in result.stderr
    with central.client(central.credential("admin")) as admin:
        assert admin.get("/api/v1/models/released").status_code == 404  # nothing was released


def test_release_signs_the_manifest_with_the_model_signing_key(central, versions):
    out = central.admin_json("models", "release", VERSIONS[0])
    assert out["version"] == VERSIONS[0] and out["superseded"] is None
    manifest = out["manifest"].encode("ascii")
    key = load_pem_public_key((central.home / "pki" / "model-signing.pub").read_bytes())
    key.verify(base64.b64decode(out["signature"]), manifest)  # raises if the signature is wrong
    signed = json.loads(manifest)
    data = (versions[VERSIONS[0]] / "weights.safetensors").read_bytes()
    assert signed["version"] == VERSIONS[0] and signed["format"] == "fedxray-model-release/1"
    assert (signed["file_sha256"], signed["file_size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    uploaded = json.loads((versions[VERSIONS[0]] / "card.json").read_text())
    record = signed["card"].pop("inference")
    assert signed["card"] == {k: v for k, v in uploaded.items() if k != "inference"}
    # The central made the LiteRT artefact of these weights (the record it was uploaded with belongs to others),
    # stores it beside them and serves exactly the bytes the signed record names.
    assert uploaded["inference"]["weights_sha256"] != record["weights_sha256"] == hashlib.sha256(data).hexdigest()
    artefact = stored_file(central, VERSIONS[0]).with_suffix(".tflite").read_bytes()
    assert (record["sha256"], record["bytes"]) == (hashlib.sha256(artefact).hexdigest(), len(artefact))
    assert out["litert_sha256"] == record["sha256"]
    with central.client(central.credential("admin")) as admin:
        served = admin.get(f"/api/v1/models/{VERSIONS[0]}/litert")
        assert served.status_code == 200 and served.content == artefact
        assert admin.get(f"/api/v1/models/{VERSIONS[1]}/litert").status_code == 404  # not released: none made
    with db(central) as con:
        (detail,) = con.execute("SELECT detail FROM audit_events WHERE action = 'model.release' ORDER BY id DESC").fetchone()
    assert json.loads(detail)["litert"] == record["sha256"]
    released = {m["version"]: m["release"] for m in central.admin_json("models", "list")}
    assert released == {"no-file": None, VERSIONS[1]: None, VERSIONS[0]: "current"}


def test_workstation_update_verifies_installs_and_classify_uses_it(ws, image):
    out = ws_json(ws, "models", "update", "--yes")
    assert out["status"] == "installed" and out["release"]["version"] == VERSIONS[0]
    assert out["release"]["signature"] == "verified" and out["evaluation"] is None  # no labelled set yet
    assert any("No local labelled set" in n for n in out["notes"])
    assert active(ws)["version"] == VERSIONS[0] and active(ws)["id"] == out["model_id"]
    assert classify_version(ws, image) == VERSIONS[0]
    # The signed artefact came with it: classify runs on LiteRT without converting anything on the workstation.
    installed = ws.root / "data" / "fedxray" / "models" / out["model_id"]
    card = json.loads((installed / "card.json").read_text())
    assert hashlib.sha256((installed / "model.tflite").read_bytes()).hexdigest() == card["inference"]["sha256"]
    result = ws.fedxray("classify", str(image), "--json", "--engine", "litert", timeout=240)
    assert result.returncode == 0 and "TensorFlow" not in result.stderr, result.stderr
    again = ws_json(ws, "models", "update", "--yes")
    assert again["status"] == "up-to-date"


def test_a_new_release_supersedes_and_update_compares_on_the_labelled_set(central, ws, versions, shared_data):
    out = central.admin_json("models", "release", VERSIONS[1])
    assert out["superseded"] == VERSIONS[0]
    released = {m["version"]: m["release"] for m in central.admin_json("models", "list")}
    assert released[VERSIONS[0]] == "superseded" and released[VERSIONS[1]] == "current"
    samples = []
    for label, cls in enumerate(CLASSES):  # the workstation's local labelled set: 2 images per class
        folder = ws.root / "data" / "fedxray" / "labelled" / cls
        folder.mkdir(parents=True, exist_ok=True)
        for src in sorted((shared_data / "cxr" / cls).glob("*.png"))[:2]:
            samples.append((Path(shutil.copy2(src, folder / src.name)), label))
    # Without --yes and without a terminal to confirm on, it shows the comparison and installs nothing.
    asked = subprocess.run([str(BIN / "fedxray"), "models", "update"], capture_output=True, text=True,
                           env=ws.env(), stdin=subprocess.DEVNULL, timeout=240)  # fmt: skip
    assert asked.returncode == 1 and "fedxray models update --yes" in asked.stderr
    assert "Signature verified with the central's model-signing key" in asked.stdout
    assert "On 8 labelled images" in asked.stdout and "sensitivity Covid (n=2)" in asked.stdout
    assert active(ws)["version"] == VERSIONS[0]
    out = ws_json(ws, "models", "update", "--yes")
    assert out["status"] == "installed" and out["release"]["version"] == VERSIONS[1]
    evaluation = out["evaluation"]
    assert evaluation["num_images"] == 8
    for key, version in (("current", VERSIONS[0]), ("new", VERSIONS[1])):
        expected = hand_metrics(versions[version], samples)
        got = evaluation[key]
        assert got["num_examples"] == 8 and got["support"] == dict.fromkeys(CLASSES, 2)
        assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-9)
        assert got["macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-9)
        assert got["sensitivity"] == pytest.approx(expected["sensitivity"], abs=1e-9)
    assert active(ws)["version"] == VERSIONS[1]
    previous = out["previous"]
    listed = {m["id"]: m for m in ws_json(ws, "models", "list")}
    assert listed[previous]["version"] == VERSIONS[0] and listed[previous]["rollback_target"]


def test_rollback_restores_the_previous_model(ws, image):
    out = ws_json(ws, "models", "rollback")
    assert out["active"]["version"] == VERSIONS[0]
    assert active(ws)["version"] == VERSIONS[0]
    assert classify_version(ws, image) == VERSIONS[0]


# ---------------------------------------------------------------- refusals: nothing changes, the model keeps working
def refused(ws: Workstation, text: str) -> None:
    installed = sorted(p.name for p in (ws.root / "data" / "fedxray" / "models").iterdir())
    out = ws_json(ws, "models", "update", "--yes", code=1)
    assert out["ok"] is False and text in out["error"], out["error"]
    assert "not changed" in out["error"]
    assert active(ws)["version"] == VERSIONS[0]
    assert sorted(p.name for p in (ws.root / "data" / "fedxray" / "models").iterdir()) == installed  # no leftovers


def test_a_tampered_file_on_the_central_is_refused(central, ws):
    path = stored_file(central, VERSIONS[1])
    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01  # one bit in the weights
    path.write_bytes(bytes(tampered))
    try:
        refused(ws, "does not match the signed release")
    finally:
        path.write_bytes(original)


def test_a_tampered_artefact_on_the_central_is_refused(central, ws):
    path = stored_file(central, VERSIONS[1]).with_suffix(".tflite")
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))  # one bit of the LiteRT artefact
    try:
        refused(ws, "LiteRT artefact does not match the signed release")
    finally:
        path.write_bytes(original)


def test_a_modified_manifest_is_refused(central, ws):
    with db(central) as con:
        (manifest,) = con.execute("SELECT manifest FROM model_versions WHERE version = ?", (VERSIONS[1],)).fetchone()
        forged = manifest.replace('"name":"FedXray federated"', '"name":"FedXray federated (better)"')
        assert forged != manifest
        con.execute("UPDATE model_versions SET manifest = ? WHERE version = ?", (forged, VERSIONS[1]))
    try:
        refused(ws, "signature does not verify")
    finally:
        with db(central) as con:
            con.execute("UPDATE model_versions SET manifest = ? WHERE version = ?", (manifest, VERSIONS[1]))


def test_an_unsigned_release_is_refused(central, ws):
    with db(central) as con:
        (signature,) = con.execute("SELECT signature FROM model_versions WHERE version = ?",
                                   (VERSIONS[1],)).fetchone()  # fmt: skip
        con.execute("UPDATE model_versions SET signature = '' WHERE version = ?", (VERSIONS[1],))
    try:
        refused(ws, "without a signature")
    finally:
        with db(central) as con:
            con.execute("UPDATE model_versions SET signature = ? WHERE version = ?", (signature, VERSIONS[1]))


def test_a_release_signed_by_another_key_is_refused(root, central, ws, image):
    key = central.home / "pki" / "model-signing.key"
    original = key.read_bytes()
    pki.create_signing_key(key_path=root / "other.key", public_path=root / "other.pub")
    pki.write_private(key, (root / "other.key").read_bytes())  # the central now signs with a key nobody enrolled
    try:
        central.admin_json("models", "release", VERSIONS[1])
        refused(ws, "signature does not verify")
    finally:
        pki.write_private(key, original)
    assert classify_version(ws, image) == VERSIONS[0]  # after every refusal the installed model still works
    central.admin_json("models", "release", VERSIONS[1])  # signed by the real key again: accepted
    assert ws_json(ws, "models", "update", "--yes", "--no-evaluate")["status"] == "installed"
    assert active(ws)["version"] == VERSIONS[1]


# ---------------------------------------------------------------- runs on the SuperLink
def run_json(central: CentralProcess, *args: str) -> dict:
    return central.admin_json("run", *args)


def test_run_start_registers_the_run_and_the_serverapp_records_its_rounds(central, standin_app, versions):
    out = run_json(central, "start", "--app", str(standin_app), "--rounds", "2", "--min-sites", "1",
                   "--local-epochs", "3", "--fedprox-mu", "0.1", "--timeout", "600",
                   "--set", f"model-dir={versions[VERSIONS[0]]}")  # fmt: skip
    run = out["run"]
    assert run["status"] == "pending" and run["flower_run_id"] == out["flower"]["run-id"]
    assert (run["num_rounds"], run["min_sites"]) == (2, 1)
    assert run["config"]["local-epochs"] == 3 and run["config"]["strategy"] == "fedprox"
    assert run["config"]["round-timeout"] == 600.0 and "central-run-id" not in run["config"]

    def finished():  # the ServerApp records its end just before Flower sees its process end
        status = run_json(central, "status", str(run["id"]))
        done = status["run"]["status"] == "finished" and status["flower"]["status"] == "finished:completed"
        return status if done else None

    status = wait_for(finished, timeout=120, interval=2, what="the stand-in run to finish")
    rounds = status["rounds"]
    assert [r["server_round"] for r in rounds] == [1, 2]
    assert rounds[1]["train_metrics"]["train_loss"] == pytest.approx(0.5)
    assert rounds[1]["evaluate_metrics"] == {"loss": 1.0, "accuracy": 0.4, "macro_f1": 0.2}
    assert [v["version"] for v in status["model_versions"]] == [f"run{run['id']}-round2", f"run{run['id']}-round1"]
    assert [v["is_best"] for v in status["model_versions"]] == [False, True]
    # What the ServerApp saw: the central's API, CA and service-credential file, the run's settings.
    seen = json.loads((central.home / "runs" / f"standin-{run['id']}.json").read_text())
    assert seen["FEDXRAY_CENTRAL_API"] == central.url and seen["FEDXRAY_CENTRAL_HOME"] == str(central.home)
    assert seen["FEDXRAY_SERVICE_TOKEN_FILE"] == str(central.home / "service.credential")
    assert seen["FEDXRAY_CENTRAL_CA"] == str(central.ca_cert)
    assert "FEDXRAY_SERVICE_TOKEN" not in seen  # the credential itself is never in the environment
    assert seen["run_config"]["central-run-id"] == run["id"] and seen["run_config"]["proximal-mu"] == 0.1
    text = central.admin("run", "status", str(run["id"])).stdout
    assert "finished:completed" in text and "VAL MACRO-F1" in text and "0.400" in text
    listing = run_json(central, "status")["runs"]
    assert listing[0]["id"] == run["id"] and listing[0]["rounds_recorded"] == 2


def test_run_start_refuses_settings_the_app_does_not_take(central, standin_app):
    before = len(run_json(central, "status")["runs"])
    result = central.admin("run", "start", "--app", str(standin_app), "--rounds", "1", "--fraction-train", "0.5",
                           check=False)  # fmt: skip
    assert result.returncode == 1 and "does not take the run setting(s) fraction-train" in result.stderr
    result = central.admin("run", "start", "--app", str(standin_app), "--rounds", "1", "--set", "sleep=soon",
                           check=False)  # fmt: skip
    assert result.returncode == 1 and "'sleep' takes a float" in result.stderr
    assert len(run_json(central, "status")["runs"]) == before  # nothing was started or recorded


def test_run_stop_stops_a_running_run(central, standin_app):
    run = run_json(central, "start", "--app", str(standin_app), "--rounds", "1", "--set", "sleep=600")["run"]

    def running():
        status = run_json(central, "status", str(run["id"]))
        return status["run"]["status"] == "running" and (status["flower"] or {}).get("status") == "running"

    wait_for(running, timeout=90, interval=2, what="the stand-in run to be running")
    stopped = run_json(central, "stop", str(run["id"]))["run"]
    assert stopped["status"] == "stopped" and stopped["finished_at"]

    def flower_stopped():
        return run_json(central, "status", str(run["id"]))["flower"]["status"] == "finished:stopped"

    wait_for(flower_stopped, timeout=60, interval=2, what="Flower to report the run stopped")
    assert run_json(central, "status", str(run["id"]))["run"]["status"] == "stopped"
    again = central.admin("run", "stop", str(run["id"]), check=False)
    assert again.returncode == 1 and "already ended (stopped)" in again.stderr
    unknown = central.admin("run", "status", "9999", check=False)
    assert unknown.returncode == 1 and "No run has id 9999" in unknown.stderr


def test_a_run_interrupted_by_a_superlink_crash_resumes_from_its_last_saved_version(central, standin_app, versions):
    run = run_json(central, "start", "--app", str(standin_app), "--rounds", "3", "--set", "round-sleep=6",
                   "--set", f"model-dir={versions[VERSIONS[0]]}")["run"]  # fmt: skip

    def round_1_saved():
        status = run_json(central, "status", str(run["id"]))
        return status if any(v["server_round"] == 1 for v in status["model_versions"]) else None

    wait_for(round_1_saved, timeout=120, interval=1, what="the stand-in run to save round 1")
    superlink_pid = json.loads((central.home / "runtime.json").read_text())["superlink_pid"]
    os.kill(superlink_pid, signal.SIGKILL)  # the SuperLink crashes mid-run; its supervisor restarts it

    def finished():
        status = run_json(central, "status", str(run["id"]))
        if status["run"]["status"] in ("failed", "stopped"):
            raise AssertionError(f"the run ended {status['run']}\n{central.log_text()[-3000:]}")
        done = status["run"]["status"] == "finished" and (status["flower"] or {}).get("status") == "finished:completed"
        return status if done else None

    status = wait_for(finished, timeout=240, interval=2, what="the interrupted run to be resumed and finish")
    after = status["run"]
    assert after["resumes"] == 1 and after["flower_run_id"] != run["flower_run_id"]
    assert json.loads((central.home / "runtime.json").read_text())["superlink_pid"] != superlink_pid
    assert [r["server_round"] for r in status["rounds"]] == [1, 2, 3]  # numbering continued, nothing twice
    assert sorted(v["server_round"] for v in status["model_versions"]) == [1, 2, 3]
    # What the resumed ServerApp was given: the same settings, the rounds done and the last saved version.
    seen = json.loads((central.home / "runs" / f"standin-{run['id']}.json").read_text())
    cfg = seen["run_config"]
    assert seen["flower_run_id"] == int(after["flower_run_id"]) and cfg["central-run-id"] == run["id"]
    assert cfg["round-sleep"] == 6.0 and cfg["num-server-rounds"] == 3 and cfg["model-dir"]
    done = cfg["start-round"]
    assert 1 <= done < 3 and f"rounds 1-{done} kept, continuing from round {done + 1}" in after["message"]
    start = Path(cfg["initial-model"])
    card = json.loads((start / "card.json").read_text())
    assert card["version"] == f"run{run['id']}-round{done}"
    listed = next(v for v in central.admin_json("models", "list") if v["version"] == card["version"])
    weights = start / card["weights"]["file"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == listed["file_sha256"]  # the central's stored copy
    assert Path(cfg["best-model"]).is_dir()
