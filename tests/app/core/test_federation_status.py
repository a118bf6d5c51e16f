"""The merged status the Federation page and `fedxray federation status` read (app.core.federation_status.
read_status): the agent's lock, its status file and the ClientApp's round file, without processes (this test
process holds the agent lock). The live agent: tests/app/cli/test_federation.py."""

from __future__ import annotations

import json

import pytest

from app.core.agent_lock import AgentLock
from app.core.federation_status import ROUND_FILE, STATUS_FILE, read_status


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "data"


def write(folder, name, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))


def test_no_agent_is_stopped_whatever_the_files_say(folder):
    write(folder, STATUS_FILE, {"state": "training", "phase": "receiving", "run_id": 4})
    status = read_status(folder)
    assert status.running is False and status.phase == "stopped" and status.pid is None
    assert status.schedule_open is True and status.windows == "always"


def test_training_progress_merges_the_clientapp_file(folder):
    lock = AgentLock.acquire(folder)
    try:
        write(folder, STATUS_FILE, {"state": "training", "phase": "receiving", "run_id": 4, "node_id": 9,
                                    "last_contact": "2026-11-28T12:00:00+00:00"})  # fmt: skip
        write(folder, ROUND_FILE, {"run_id": 4, "round": 2, "num_rounds": 5, "message": "train", "phase": "training",
                                   "epoch": 1, "epochs": 3, "batch": 14, "batches": 40, "eta_seconds": 150.0})  # fmt: skip
        status = read_status(folder)
        assert status.running and status.phase == "training" and (status.round, status.num_rounds) == (2, 5)
        assert (status.epoch, status.epochs, status.batch, status.batches) == (1, 3, 14, 40)
        assert status.phase_text == "Training: epoch 1 of 3, batch 14 of 40 (about 2 min left)"
        assert status.node_id == 9 and status.last_contact.startswith("2026-11-28")
        # A round file of another run (an old one) is not mixed in.
        write(folder, ROUND_FILE, {"run_id": 3, "round": 7, "phase": "training", "epoch": 2, "epochs": 2})
        status = read_status(folder)
        assert status.phase == "receiving" and status.epoch is None
    finally:
        lock.release()


@pytest.mark.parametrize("text,kind", [("ResourceExhaustedError: OOM when allocating tensor", "gpu-memory"),
                                       ("DatasetError: no images in the class folders of /x", "data"),
                                       ("ValueError: something", "other")])  # fmt: skip
def test_a_failed_message_is_told_in_plain_words(folder, text, kind):
    lock = AgentLock.acquire(folder)
    try:
        write(folder, STATUS_FILE, {"state": "waiting", "phase": "waiting", "run_id": 4})
        write(folder, ROUND_FILE, {"run_id": 4, "round": 1, "phase": "error", "error": text})
        status = read_status(folder)
        assert status.phase == "waiting" and status.error_kind == kind
        assert text not in status.error  # plain words, not the exception
    finally:
        lock.release()
