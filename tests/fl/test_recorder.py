"""Recording a run: the local directory recorder, and the HTTP recorder against the real central service
(`fedxray-central serve` on loopback with TLS), including a central restart in the middle of the run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fl.recorder import HttpRecorder, LocalRecorder, MultiRecorder, open_recorder

TRAIN = {"num_sites": 3, "num_examples": 120, "train_loss": 1.1}
EVALUATE = {"accuracy": 0.5, "macro_f1": 0.4, "per_class": {"Covid": {"sensitivity": None, "f1": 0.5}}}


def saved_version(tmp_path, tiny_model_dir, version):
    """A model folder as the ServerApp saves it (the tiny test network, card renamed to `version`)."""
    from fl.modelfile import load_model, save_model

    model, card = load_model(tiny_model_dir)
    target = tmp_path / version
    card = save_model(model, target, dataclasses.replace(card, version=version))
    return target, dataclasses.asdict(card)


def test_local_recorder_writes_run_rounds_replies_versions_and_best(tmp_path, tiny_model_dir):
    rec = LocalRecorder(tmp_path / "runs")
    label = rec.run_started(flower_run_id=42, num_rounds=2, min_sites=2, config={"arch": "tiny"})
    assert label == "run42"
    rec.reply_received({"round": 1, "phase": "train", "node_id": 7, "verdict": "accepted"})
    rec.round_finished(server_round=1, num_sites=3, train_metrics=TRAIN, evaluate_metrics=EVALUATE, server_metrics=None)
    folder, card = saved_version(rec.models_dir(), tiny_model_dir, "run42-round1")
    rec.model_version(version="run42-round1", model_dir=folder, card=card, server_round=1, is_best=True)
    rec.run_finished(status="finished", summary={"best_version": "run42-round1"})

    run_dir = tmp_path / "runs" / "run-42"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["num_rounds"] == 2 and run["config"] == {"arch": "tiny"}
    (row,) = [json.loads(x) for x in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert row["server_round"] == 1 and row["train_metrics"] == TRAIN and row["evaluate_metrics"] == EVALUATE
    assert json.loads((run_dir / "best.json").read_text())["version"] == "run42-round1"
    assert json.loads((run_dir / "replies.jsonl").read_text())["node_id"] == 7


def test_open_recorder_reads_the_environment_only(tmp_path):
    local_only, local = open_recorder(env={"FEDXRAY_RECORD_DIR": str(tmp_path)})
    assert local_only is local and local.root == tmp_path
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    both, _ = open_recorder(env={"FEDXRAY_RECORD_DIR": str(tmp_path), "FEDXRAY_CENTRAL_API": "https://127.0.0.1:1",
                                 "FEDXRAY_SERVICE_TOKEN_FILE": str(token)})  # fmt: skip
    assert isinstance(both, MultiRecorder) and isinstance(both.recorders[1], HttpRecorder)
    assert both.recorders[1]._client.headers["Authorization"] == "Bearer s3cret"
    with pytest.raises(Exception, match="FEDXRAY_SERVICE_TOKEN"):
        open_recorder(env={"FEDXRAY_CENTRAL_API": "https://127.0.0.1:1"})


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_http_recorder_fills_the_central_and_survives_its_restart(tmp_path, tiny_model_dir):
    from tests.support.central import CentralProcess

    central = CentralProcess(tmp_path / "home").start()
    try:
        rec = HttpRecorder(central.url, central.credential("service"), ca_file=str(central.ca_cert), patience=5)
        label = rec.run_started(flower_run_id=123456789012345, num_rounds=2, min_sites=2, config={"arch": "tiny"})
        run_id = rec.run_id
        assert label == f"run{run_id}"
        rec.round_finished(server_round=1, num_sites=3, train_metrics=TRAIN, evaluate_metrics=EVALUATE,
                           server_metrics=None)  # fmt: skip
        v1, card1 = saved_version(tmp_path, tiny_model_dir, f"{label}-round1")
        rec.model_version(version=f"{label}-round1", model_dir=v1, card=card1, server_round=1, is_best=True)

        central.stop()  # the central restarts in the middle of the run: records wait, in order
        rec.round_finished(server_round=2, num_sites=2, train_metrics=TRAIN, evaluate_metrics=EVALUATE,
                           server_metrics={"accuracy": 0.7})  # fmt: skip
        v2, card2 = saved_version(tmp_path, tiny_model_dir, f"{label}-round2")
        rec.model_version(version=f"{label}-round2", model_dir=v2, card=card2, server_round=2, is_best=True)
        assert [name for name, _ in rec._pending] == ["round 2", f"model {label}-round2"]
        central.start()
        rec.run_finished(status="finished")
        assert rec._pending == []

        with central.client(central.credential("admin")) as api:
            run = api.get(f"/api/v1/runs/{run_id}").json()
            rounds = api.get(f"/api/v1/runs/{run_id}/rounds").json()
            models = {m["version"]: m for m in api.get("/api/v1/models").json()}
        assert run["status"] == "finished" and run["flower_run_id"] == "123456789012345" and run["num_rounds"] == 2
        assert [(r["server_round"], r["num_sites"]) for r in rounds] == [(1, 3), (2, 2)]
        assert rounds[0]["train_metrics"] == TRAIN and rounds[1]["server_metrics"] == {"accuracy": 0.7}
        for version, card in ((f"{label}-round1", card1), (f"{label}-round2", card2)):
            m = models[version]
            assert m["run_id"] == run_id and m["card"] == card
            assert m["file_sha256"] == card["weights"]["sha256"] and m["file_size"] == card["weights"]["bytes"]
        assert models[f"{label}-round2"]["is_best"] and not models[f"{label}-round1"]["is_best"]
    finally:
        central.stop()
