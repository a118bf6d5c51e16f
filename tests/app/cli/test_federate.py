"""`fedxray federate` against a real SuperLink (TLS, node authentication) on loopback: a refused key, then a
registered one; the SuperNode restarted after it dies; SIGTERM stops everything. No ClientApp runs here (no run
is started), so no TensorFlow is involved; the apps themselves are tested in tests/fl/test_flower_apps.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.federation_status import Event, parse_line
from tests.fl.flower_support import (
    BIN,
    Processes,
    descendants,
    flower_env,
    free_port,
    make_sites,
    make_test_ca,
    superlink_cmd,
    wait_port,
    write_flwr_config,
)
from tests.support.launch import CONNECTION

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(
    ("line", "event"),
    [  # lines as flower-supernode 1.41 prints them (ANSI colours included)
        ("\x1b[92mINFO \x1b[0m:      SuperNode ID: 14444461478320655787", Event("node_id", "14444461478320655787")),
        ("\x1b[92mINFO \x1b[0m:      [RUN 18310009046524626521]", Event("run", "18310009046524626521")),
        ("\x1b[92mINFO \x1b[0m:      Receiving: train message (ID: 199bc1a9)", Event("received", "train")),
        ("\x1b[92mINFO \x1b[0m:      Receiving: evaluate message (ID: 12af)", Event("received", "evaluate")),
        ("\x1b[92mINFO \x1b[0m:      Sent successfully", Event("sent")),
        ("\x1b[93mWARNING \x1b[0m:   Connection attempt failed, retrying in 0.99 seconds", Event("connection_failed")),
        ("ERROR :      [code: 2004] Failed to activate SuperNode", Event("auth_refused")),
        ("I0000 cudart_stub.cc:31] Could not find cuda drivers", None),
    ],
)
def test_supernode_log_lines(line, event):
    assert parse_line(line) == event


def ec_key_pair(folder: Path) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format, as `fedxray enroll` makes (private key 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / "node.key", folder / "node.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))  # fmt: skip
    os.chmod(private, 0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))  # fmt: skip
    return private, public


@pytest.fixture
def world(tmp_path, shared_data):
    """A SuperLink with TLS and node authentication, a site folder, a key pair, an isolated workstation home."""
    tls = make_test_ca(tmp_path / "pki")
    procs = Processes(tmp_path / "logs")
    port = free_port()
    site = make_sites(shared_data / "cxr", tmp_path / "data", per_class=3,
                      shares={"site": dict.fromkeys(("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"), 1.0)})["site"]  # fmt: skip
    private, public = ec_key_pair(tmp_path)
    env = flower_env(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "xdg-data"),
                     XDG_CACHE_HOME=str(tmp_path / "cache"))  # fmt: skip
    try:
        cmd = superlink_cmd(port, tls=tls) + ["--enable-supernode-auth"]
        procs.start("superlink", cmd, env=flower_env(FLWR_HOME=str(tmp_path / "sl-home")), cwd=tmp_path)
        wait_port(port)
        write_flwr_config(tmp_path / "flwr", port, ca=tls["ca"])
        args = ["federate", "--superlink", f"127.0.0.1:{port}", "--root-certificates", str(tls["ca"]),
                "--key", str(private), "--data", str(site), "--refusal-grace", "8"]  # fmt: skip
        yield {"tmp": tmp_path, "procs": procs, "args": args, "env": env, "public": public, "private": private,
               "status": tmp_path / "xdg-data" / "fedxray" / "federation-status.json"}  # fmt: skip
    finally:
        procs.stop_all()


def fedxray(*args, env, **kwargs):
    return [sys.executable, "-m", "app", *map(str, args)], dict(env=env, **kwargs)


def wait_status(path: Path, predicate, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        if state and predicate(state):
            return state
        time.sleep(0.3)
    pytest.fail(f"status never reached the expected state; last: {state}")


def test_an_unregistered_key_is_refused_with_a_clear_message(world):
    cmd, kw = fedxray(*world["args"], env=world["env"])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "not (or no longer) enrolled" in out.stderr
    assert json.loads(world["status"].read_text())["state"] == "not-enrolled"


def test_a_key_readable_by_others_is_refused_before_anything_starts(world):
    os.chmod(world["private"], 0o644)
    cmd, kw = fedxray(*world["args"], env=world["env"])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    assert out.returncode == 2 and "chmod 600" in out.stderr


def test_registered_node_connects_is_restarted_and_stops_cleanly(world):
    register = subprocess.run(
        [str(BIN / "flwr"), "supernode", "register", str(world["public"]), CONNECTION, "--format", "json"],
        capture_output=True, text=True, env=flower_env(FLWR_HOME=str(world["tmp"] / "flwr")), timeout=60,
    )  # fmt: skip
    assert register.returncode == 0, register.stdout + register.stderr
    node_id = int(json.loads(register.stdout[register.stdout.index("{"):])["node-id"])

    cmd, kw = fedxray(*world["args"][:-1], "150", env=world["env"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)  # fmt: skip
    try:
        first = wait_status(world["status"], lambda s: s["state"] == "connected")
        assert first["node_id"] == node_id and first["restarts"] == 0
        assert Path(first["data_dir"]).name == "site"

        # The SuperNode dies: the supervisor restarts it. The SuperLink refuses the node until its previous
        # connection times out (about a minute, two missed heartbeats), so allow refusals for longer here.
        os.kill(first["supernode_pid"], signal.SIGKILL)
        second = wait_status(world["status"], lambda s: s["restarts"] == 1 and s["state"] == "connected", timeout=150)
        assert second["supernode_pid"] != first["supernode_pid"] and second["node_id"] == node_id

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:  # on failure: the supervisor and the SuperNode (own session) with its SuperExec must all end
        if proc.poll() is None:
            family = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert f"as node {node_id}" in output and "restarting in" in output and "Stopped" in output
    assert json.loads(world["status"].read_text())["state"] == "stopped"
    assert not Path(f"/proc/{second['supernode_pid']}").exists()
