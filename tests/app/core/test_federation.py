"""The workstation's federation status file and data checks (app.core.federation), without processes.

The supervised SuperNode itself is tested with real processes in tests/app/cli/test_federate.py."""

import json

import pytest

from app.core.federation import FederationError, NodeSettings, NodeSupervisor, check_data_dir
from app.core.federation_status import Event, FederationStatus


def test_status_follows_the_supernode_and_merges_the_clientapp_round_file(tmp_path):
    status = FederationStatus(tmp_path, NodeSettings(superlink="central:9092", data_dir=tmp_path / "data"))
    assert status.describe(Event("node_id", "77")) == "Connected to the central's SuperLink at central:9092 as node 77."
    status.describe(Event("run", "5"))
    assert "to train" in status.describe(Event("received", "train"))
    # The ClientApp (another process) writes its round file; the next event merges it in.
    (tmp_path / "federation-round.json").write_text(json.dumps(
        {"run_id": 5, "round": 3, "message": "train", "phase": "sending", "device": "CPU", "train_examples": 40,
         "validation": {"accuracy": 0.625, "macro_f1": 0.5}, "train": {"train-loss": 0.9}}))  # fmt: skip
    line = status.describe(Event("sent"))
    assert line == ("Round 3: reply sent to the central (global model on this site's validation patients: "
                    "accuracy 0.625, macro-F1 0.500).")  # fmt: skip
    saved = json.loads((tmp_path / "federation-status.json").read_text())
    assert saved["state"] == "waiting" and saved["node_id"] == 77 and saved["run_id"] == 5 and saved["round"] == 3
    assert saved["messages_received"] == 1 and saved["messages_sent"] == 1
    assert saved["local"]["validation"]["accuracy"] == 0.625 and saved["local"]["device"] == "CPU"


def test_connection_loss_is_reported_once(tmp_path):
    status = FederationStatus(tmp_path, NodeSettings(superlink="c:1", data_dir=tmp_path))
    assert "retrying" in status.describe(Event("connection_failed"))
    assert status.describe(Event("connection_failed")) is None
    assert status.describe(Event("reconnected")) == "Connection to the central restored."


def test_supernode_command_carries_tls_key_and_node_config(tmp_path):
    settings = NodeSettings(superlink="central:9092", data_dir=tmp_path / "my data", root_certificates=tmp_path / "ca.pem",
                            private_key=tmp_path / "node.key")  # fmt: skip
    sup = NodeSupervisor(settings, folder=tmp_path)
    cmd = sup.command(9999)
    assert cmd[cmd.index("--superlink") + 1] == "central:9092" and cmd[cmd.index("--port") + 1] == "9999"
    assert cmd[cmd.index("--root-certificates") + 1] == str(tmp_path / "ca.pem")
    assert cmd[cmd.index("--auth-supernode-private-key") + 1] == str(tmp_path / "node.key")
    assert "--insecure" not in cmd
    import tomllib

    config = tomllib.loads((tmp_path / "federation-node-config.toml").read_text())
    assert config == {"data-dir": str(tmp_path / "my data"), "status-file": str(tmp_path / "federation-round.json")}


def test_a_missing_supernode_program_is_a_clear_error(tmp_path, monkeypatch):
    # An incomplete installation: the Flower programs that sit beside `fedxray` are gone.
    settings = NodeSettings(superlink="central:9092", data_dir=tmp_path, insecure=True)
    sup = NodeSupervisor(settings, folder=tmp_path)
    monkeypatch.setattr("app.core.federation.sys.executable", str(tmp_path / "no-such-dir" / "python"))
    with pytest.raises(FederationError, match="Cannot start Flower's SuperNode .*reinstall"):
        sup.run()


def test_data_without_two_patients_is_refused_clearly(tmp_path):
    with pytest.raises(FederationError, match="does not exist"):
        check_data_dir(tmp_path / "missing")
    (tmp_path / "set" / "Normal").mkdir(parents=True)
    (tmp_path / "set" / "Normal" / "a.png").write_bytes(b"not read here")
    with pytest.raises(FederationError, match="at least two patients"):
        check_data_dir(tmp_path / "set")
