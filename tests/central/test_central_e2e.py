"""End to end on loopback: `fedxray-central serve`, `fedxray enroll`, real SuperNodes, every refusal.

Real processes, certificates, keyring (gnome-keyring on a private D-Bus session) and database files. One
central serves the whole module; tests run in file order, the destructive ones (revoke, leave, restart) last.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from central import pki
from tests.support.central import CentralProcess, SuperNode, Workstation, wait_for

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------- module fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def central(root, secret_service):
    proc = CentralProcess(root / "home").start()
    yield proc
    proc.stop()


def enroll(ws: Workstation, central: CentralProcess, token: dict, *extra: str) -> subprocess.CompletedProcess:
    return ws.fedxray("enroll", "--central", central.url, "--token", token["token"],
                      "--ca-fingerprint", token["ca_fingerprint"], *extra)  # fmt: skip


@pytest.fixture(scope="module")
def stations(root, central) -> dict[str, Workstation]:
    """Two workstations of two sites, enrolled through `fedxray enroll`."""
    out = {}
    for name, site in (("ws1", "St Mary"), ("ws2", "General Hospital")):
        ws = Workstation(root / name, name)
        result = enroll(ws, central, central.create_token(site), "--name", name)
        assert result.returncode == 0, result.stderr
        assert "Enrolled: node" in result.stdout
        out[name] = ws
    return out


@pytest.fixture(scope="module")
def supernodes(root, central, stations) -> dict[str, SuperNode]:
    """A SuperNode per workstation with its key (0600 temp file) and the central's CA."""
    nodes = {}
    for name, ws in stations.items():
        enrollment = ws.enrollment()
        key = ws.export_private_key(root / f"{name}.key")
        nodes[name] = SuperNode(superlink=enrollment["superlink_address"],
                                root_cert=ws.config_dir / "central" / "central-ca.pem", key=key,
                                log=root / f"{name}-supernode.log", patient=True)  # fmt: skip
    yield nodes
    for node in nodes.values():
        node.stop()


def nodes_by_id(central: CentralProcess) -> dict[int, dict]:
    return {n["node_id"]: n for n in central.admin_json("nodes", "list")}


def keyring_secret(ws: Workstation, name: str) -> str | None:
    code = f"from app.core.keystore import SecretStore; v = SecretStore().get({name!r}); print(v or '')"
    result = ws.python(code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() or None


def node_secrets(ws: Workstation) -> tuple[str, str]:
    keyring_id = ws.enrollment()["keyring_id"]
    key = keyring_secret(ws, f"{keyring_id}/supernode-private-key")
    credential = keyring_secret(ws, f"{keyring_id}/api-credential")
    assert key and credential
    return key, credential


def new_openssh_key(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP384R1())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))  # fmt: skip
    os.close(fd)
    return path


# ---------------------------------------------------------------- start-up
def test_first_start_created_the_home_and_a_second_serve_refuses(central):
    for name in ("pki/ca.key", "pki/server.key", "pki/model-signing.key", "admin.credential", "service.credential"):
        assert (central.home / name).stat().st_mode & 0o077 == 0, name
    assert (central.home / "superlink" / "state.db").exists()  # SuperLink state survives restarts
    second = subprocess.run(CentralProcess(central.home).command(), capture_output=True, text=True, timeout=60,
                            env=central.env)  # fmt: skip
    assert second.returncode == 1
    assert "already using" in second.stderr
    assert central.client().get("/health").json() == {"status": "ok", "database": "ok", "superlink": "up",
                                                       "version": "0.1.0"}  # fmt: skip


# ---------------------------------------------------------------- enrolment
def test_two_workstations_enrolled_with_secrets_only_in_the_keyring(central, stations):
    nodes = nodes_by_id(central)
    assert sorted(n["site"] for n in nodes.values()) == ["General Hospital", "St Mary"]
    assert all(n["status"] == "active" for n in nodes.values())
    for ws in stations.values():
        enrollment = ws.enrollment()
        assert enrollment["node_id"] in nodes
        assert enrollment["superlink_address"] == central.fleet_address
        assert enrollment["hostname"] == ws.name and nodes[enrollment["node_id"]]["hostname"] == ws.name
        folder = ws.config_dir / "central"
        assert (folder / "central-ca.pem").read_bytes() == central.ca_cert.read_bytes()
        assert (folder / "model-signing.pub").read_bytes() == (central.home / "pki/model-signing.pub").read_bytes()
        assert (folder / "node.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
        key, credential = node_secrets(ws)
        assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        key_body = "".join(key.strip().splitlines()[1:-1])
        for path in ws.root.rglob("*"):
            if path.is_file():
                data = path.read_text(errors="replace")
                assert credential not in data and key_body[:40] not in data, f"secret in plain text: {path}"
        status = json.loads(ws.fedxray("enroll", "--status", "--json").stdout)
        assert status["secrets_present"] and status["central"]["status"] == "active"
    tokens = central.admin_json("token", "list")
    assert sorted(t["state"] for t in tokens) == ["used", "used"]


def test_supernodes_come_online(central, stations, supernodes):
    ids = {name: ws.enrollment()["node_id"] for name, ws in stations.items()}

    def all_online():
        nodes = nodes_by_id(central)
        return all(nodes[i]["online"] and nodes[i]["last_seen_at"] for i in ids.values())

    wait_for(all_online, timeout=90, interval=2, what="both SuperNodes online in `nodes list`")
    for name, node in supernodes.items():
        assert node.node_id() == ids[name]
    table = central.admin("nodes", "list").stdout
    assert "St Mary" in table and "General Hospital" in table and "yes" in table


# ---------------------------------------------------------------- refusals
def test_a_used_token_is_refused(root, central, stations):
    token = central.create_token("Reuse")
    assert enroll(Workstation(root / "reuse1", "reuse1"), central, token).returncode == 0
    second = Workstation(root / "reuse2", "reuse2")
    result = enroll(second, central, token)
    assert result.returncode == 1
    assert "already been used" in result.stderr
    assert not (second.config_dir / "central").exists()


def test_an_expired_token_is_refused(root, central):
    token = central.create_token("Late", expires="1s")
    time.sleep(1.5)
    ws = Workstation(root / "late", "late")
    result = enroll(ws, central, token)
    assert result.returncode == 1
    assert "expired" in result.stderr
    assert not (ws.config_dir / "central").exists()
    assert next(t for t in central.admin_json("token", "list") if t["id"] == token["id"])["state"] == "expired"


def test_a_wrong_ca_fingerprint_is_refused_and_the_token_stays_usable(root, central):
    token = central.create_token("Careful")
    ws = Workstation(root / "careful", "careful")
    wrong = dict(token, ca_fingerprint="00" * 32)
    result = enroll(ws, central, wrong)
    assert result.returncode == 1
    # The fingerprint it found is shown as IT reads it out: upper-case groups of four, four groups a line.
    fp = token["ca_fingerprint"].upper()
    lines = [" ".join(fp[i + j:i + j + 4] for j in range(0, 16, 4)) for i in range(0, 64, 16)]
    assert "not the one IT gave you" in result.stderr and "\n".join(lines) in result.stderr
    assert not (ws.config_dir / "central").exists()
    assert next(t for t in central.admin_json("token", "list") if t["id"] == token["id"])["state"] == "active"
    assert enroll(ws, central, token).returncode == 0  # the right fingerprint still works


def test_an_unenrolled_key_cannot_join(root, central):
    node = SuperNode(superlink=central.fleet_address, root_cert=central.ca_cert,
                     key=new_openssh_key(root / "stranger.key"), log=root / "stranger.log")  # fmt: skip
    try:
        code = node.wait_exit(90)
    finally:
        node.stop()
    assert code != 0 and "Exit Code: 305" in node.text(), node.text()[-1500:]  # Flower: could not connect
    assert "[code: 2004] Failed to activate SuperNode" in node.text()
    assert "SuperNode ID" not in node.text()


def test_a_supernode_that_does_not_trust_the_central_ca_cannot_connect(root, central, stations):
    other_ca = root / "other-ca.pem"
    pki.create_ca(key_path=root / "other-ca.key", cert_path=other_ca)  # a CA, but not the central's
    key = stations["ws2"].export_private_key(root / "ws2-copy.key")
    node = SuperNode(superlink=central.fleet_address, root_cert=other_ca, key=key, log=root / "wrongca.log")
    try:
        code = node.wait_exit(120)
    finally:
        node.stop()
    assert code != 0 and "Exit Code: 305" in node.text() and "CERTIFICATE_VERIFY_FAILED" in node.text()
    assert "SuperNode ID" not in node.text()


def test_control_and_runtime_apis_are_unreachable_through_the_public_address(central):
    from flwr.proto.control_pb2 import ListNodesRequest

    body = ListNodesRequest().SerializeToString()
    headers = {"content-type": "application/protobuf"}
    with central.client() as public:
        for path in ("/v1/control/list-nodes", "/v1/control/register-node", "/v1/control/start-run",
                     "/v1/runtime/pull-task-input", "/v1/fleet/../control/list-nodes",
                     "/v1/fleet/%2e%2e/control/list-nodes", "/v1/fleet//control/list-nodes",
                     "/v1/fleet/list-nodes", "/v1/fleet/pull-messages/../../control/list-nodes"):  # fmt: skip
            r = public.post(path, content=body, headers=headers)
            assert r.status_code == 404, (path, r.status_code, r.text)
        assert public.get("/v1/fleet/pull-messages").status_code == 405
    # Raw request lines (no client-side path normalisation) are refused as well.
    for raw in ("/v1/fleet/../control/list-nodes", "/v1/fleet/..%2fcontrol/list-nodes", "/./v1/control/list-nodes"):
        assert _raw_post_status(central, raw, body) == 404, raw
    # The same call on loopback straight to the SuperLink works: the 404s are the proxy's doing.
    direct = httpx.post(f"https://127.0.0.1:{central.superlink_port}/v1/control/list-nodes", content=body,
                        headers=headers, verify=central.ssl_context())  # fmt: skip
    assert direct.status_code == 200
    # And the SuperLink listens on loopback only.
    for address in _non_loopback_addresses():
        with pytest.raises(OSError):
            socket.create_connection((address, central.superlink_port), timeout=2).close()


def _raw_post_status(central: CentralProcess, path: str, body: bytes) -> int:
    with socket.create_connection(("127.0.0.1", central.port)) as sock, \
            central.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1") as tls:  # fmt: skip
        tls.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/protobuf\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)  # fmt: skip
        head = tls.recv(64).decode()
    return int(head.split()[1])


def _non_loopback_addresses() -> list[str]:
    found = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
            found.add(s.getsockname()[0])
        except OSError:
            pass
    return [a for a in found if not a.startswith("127.")]


# ---------------------------------------------------------------- authorisation
def test_authorization_matrix(central, stations):
    _, ws_credential = node_secrets(stations["ws2"])
    admin, service = central.credential("admin"), central.credential("service")
    anonymous = central.client()
    as_ws, as_admin, as_service = central.client(ws_credential), central.client(admin), central.client(service)

    # No credential / an unknown one.
    for path in ("/api/v1/workstation", "/api/v1/admin/nodes", "/api/v1/runs", "/metrics", "/api/v1/models"):
        r = anonymous.get(path)
        assert r.status_code == 401 and r.json()["detail"].startswith("Missing credential"), path
    r = central.client("fxw_" + "x" * 43).get("/api/v1/workstation")
    assert r.status_code == 401 and r.json()["detail"] == "Credential not recognised."
    # Admin routes with a workstation (or service) credential.
    for client, role in ((as_ws, "a workstation credential"), (as_service, "the service credential")):
        for method, path in (("GET", "/api/v1/admin/nodes"), ("GET", "/api/v1/admin/tokens"),
                             ("POST", "/api/v1/admin/nodes/1/revoke"), ("GET", "/metrics"),
                             ("GET", "/api/v1/admin/audit")):  # fmt: skip
            r = client.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 403, (role, path)
            assert r.json()["detail"] == f"This route needs the admin credential; the request used {role}."
    r = as_ws.post("/api/v1/admin/tokens", json={"site": "Sneaky"})
    assert r.status_code == 403
    # Workstation routes need a workstation credential.
    r = as_admin.get("/api/v1/workstation")
    assert r.status_code == 403 and "workstation credential" in r.json()["detail"]
    # Runs: read by workstations and admins, recorded only by the service (the ServerApp); admins start and stop
    # runs through /api/v1/admin/runs, which workstations and the service cannot use.
    assert as_ws.post("/api/v1/runs", json={"num_rounds": 1}).status_code == 403
    r = as_admin.patch("/api/v1/runs/1", json={"status": "stopped"})
    assert r.status_code == 403 and r.json()["detail"].endswith("needs the service credential; the request used the "
                                                                 "admin credential.")
    for client in (as_ws, as_service):
        assert client.post("/api/v1/admin/runs", json={"settings": {}}).status_code == 403
        assert client.post("/api/v1/admin/runs/1/stop").status_code == 403
    assert as_ws.get("/api/v1/runs").status_code == 200
    assert as_admin.get("/api/v1/runs").status_code == 200
    # /health and the CA (what enrolment starts from) need nothing.
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/api/v1/enrollment/ca").json()["fingerprint"] == stations["ws2"].enrollment()[
        "ca_fingerprint"]
    assert anonymous.get("/openapi.json").json()["info"]["title"] == "FedXray central"


# ---------------------------------------------------------------- hostile requests
def _snapshot(central: CentralProcess) -> dict:
    import sqlite3

    with sqlite3.connect(f"file:{central.home / 'central.db'}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables if t != "workstations"}
        # last_seen_at moves on its own while SuperNodes poll; everything else must stay put.
        columns = [r[1] for r in conn.execute("PRAGMA table_info(workstations)") if r[1] != "last_seen_at"]
        out["workstations"] = conn.execute(f"SELECT {', '.join(columns)} FROM workstations ORDER BY 1").fetchall()
        return out


def test_hostile_requests_get_4xx_and_change_nothing(central, stations):
    admin = central.client(central.credential("admin"))
    service = central.client(central.credential("service"))
    anonymous = central.client()
    ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    spare = central.create_token("Spare")  # a valid token must survive bad enrolment attempts
    before = _snapshot(central)
    cases = [
        (admin.post("/api/v1/admin/tokens", content=b'{"site": "' + b"x" * 2_000_000 + b'"}',
                    headers={"content-type": "application/json"}), 413),
        (admin.post("/api/v1/admin/tokens", content=b"{not json", headers={"content-type": "application/json"}), 422),
        (admin.post("/api/v1/admin/tokens", json={"site": 123}), 422),
        (admin.post("/api/v1/admin/tokens", json={"site": "A", "expires_in_seconds": "soon"}), 422),
        (admin.post("/api/v1/admin/tokens", json={"site": "A", "role": "admin"}), 422),
        (admin.post("/api/v1/admin/tokens", json={"site": "bad\x00name"}), 422),
        (admin.post("/api/v1/admin/tokens", json=["site"]), 422),
        (admin.post("/api/v1/admin/tokens/999999/revoke"), 404),
        (admin.post("/api/v1/admin/nodes/123456789/revoke"), 404),
        (admin.post("/api/v1/admin/nodes/-1/revoke"), 422),
        (admin.post(f"/api/v1/admin/nodes/{2**70}/revoke"), 422),
        (admin.get("/api/v1/runs/999999"), 404),
        (admin.get("/api/v1/runs/abc"), 422),
        (service.put("/api/v1/runs/999999/rounds/1", json={"num_sites": 1}), 404),
        (service.post("/api/v1/runs", content=b'{"num_rounds": 1, "config": {"x": NaN}}',
                      headers={"content-type": "application/json"}), 422),
        (service.post("/api/v1/runs", json={"num_rounds": 0}), 422),
        (service.post("/api/v1/models", json={"version": "../../etc", "card": {}}), 422),
        (service.post("/api/v1/models", json={"version": "ok", "card": {}, "run_id": 424242}), 404),
        (admin.get("/api/v1/models/..%2F..%2Fetc%2Fpasswd/file"), (404, 422)),
        (admin.get("/api/v1/models/%2e%2e/file"), (404, 422)),
        (admin.get("/api/v1/models/.hidden/file"), 422),
        (service.put("/api/v1/models/nothere/file", content=b"data"), 404),
        (admin.post("/api/v1/models/nothere/release"), 404),
        (anonymous.post("/api/v1/enrollment", json={"token": "fxe1.nope", "public_key": ed}), 422),
        (anonymous.post("/api/v1/enrollment", json={"token": spare["token"], "public_key": ed}), 422),
        (anonymous.post("/api/v1/enrollment", json={"token": spare["token"], "public_key": "ssh-rsa AAAA"}), 422),
        (anonymous.post("/api/v1/enrollment", json={"token": spare["token"][:-2] + "zz",
                                                    "public_key": stations["ws1"].config_dir.joinpath(
                                                        "central", "node.pub").read_text()}), 409),
        (anonymous.post("/api/v1/enrollment", json={"token": "fxe1." + "A" * 22 + "." + "B" * 43,
                                                    "public_key": _fresh_openssh_public()}), 401),
        (anonymous.post("/api/v1/enrollment", json={"token": spare["token"]}), 422),
        (anonymous.post("/api/v1/enrollment", content=b"\xff\xfe", headers={"content-type": "application/json"}), 422),
    ]  # fmt: skip
    for i, (response, expected) in enumerate(cases):
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert response.status_code in expected, (i, response.status_code, response.text[:300])
        assert "detail" in response.json(), i
        assert "Traceback" not in response.text
    assert _snapshot(central) == before
    assert next(t for t in central.admin_json("token", "list") if t["id"] == spare["id"])["state"] == "active"
    # The refusals left no secret in the log either.
    log = central.log_text()
    assert spare["token"] not in log and central.credential("admin") not in log


def _fresh_openssh_public() -> str:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


# ---------------------------------------------------------------- runs, metrics, models (issue 5 writes them)
def test_runs_metrics_and_signed_model_release(central, stations):
    service = central.client(central.credential("service"))
    admin = central.client(central.credential("admin"))
    _, ws_credential = node_secrets(stations["ws2"])
    ws = central.client(ws_credential)

    run = service.post("/api/v1/runs", json={"num_rounds": 2, "min_sites": 2, "config": {"local-epochs": 1},
                                              "flower_run_id": 2**64 - 1}).json()  # fmt: skip
    assert service.patch(f"/api/v1/runs/{run['id']}", json={"status": "running"}).json()["started_at"]
    metrics = {"loss": 0.5, "per_class": {"Covid": {"sensitivity": 0.75}}}
    assert service.put(f"/api/v1/runs/{run['id']}/rounds/1", json={"num_sites": 2, "train_metrics": metrics,
                                                                   "evaluate_metrics": {"accuracy": 0.8}}).status_code == 200
    assert service.put(f"/api/v1/runs/{run['id']}/rounds/1", json={"server_metrics": {"macro_f1": 0.7}}).status_code == 200
    rounds = ws.get(f"/api/v1/runs/{run['id']}/rounds").json()
    assert [(r["server_round"], r["num_sites"], r["train_metrics"], r["evaluate_metrics"], r["server_metrics"])
            for r in rounds] == [(1, 2, metrics, {"accuracy": 0.8}, {"macro_f1": 0.7})]  # fmt: skip
    assert ws.get(f"/api/v1/runs/{run['id']}").json()["flower_run_id"] == str(2**64 - 1)
    assert ws.put(f"/api/v1/runs/{run['id']}/rounds/2", json={"num_sites": 1}).status_code == 403

    import hashlib

    payload = os.urandom(300_000)
    # Release needs a card that describes the file (a plain weights file name and its SHA-256).
    card = {"name": "FedXray test", "version": "r1-1", "arch": "tiny", "input_size": 64, "scaling": "tf",
            "classes": ["Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"],
            "weights": {"file": "weights.safetensors", "sha256": hashlib.sha256(payload).hexdigest()}}
    created = service.post("/api/v1/models", json={"version": "r1-1", "card": card, "run_id": run["id"],
                                                    "server_round": 1, "is_best": True})  # fmt: skip
    assert created.status_code == 201 and created.json()["is_best"] is True
    assert admin.post("/api/v1/models/r1-1/release").status_code == 409  # no file yet
    uploaded = service.put("/api/v1/models/r1-1/file", content=payload).json()
    assert uploaded["file_sha256"] == hashlib.sha256(payload).hexdigest() and uploaded["file_size"] == len(payload)
    assert ws.get("/api/v1/models/released").status_code == 404
    assert ws.post("/api/v1/models/r1-1/release").status_code == 403
    released = admin.post("/api/v1/models/r1-1/release").json()
    download = ws.get("/api/v1/models/r1-1/file")
    assert download.content == payload
    # The workstation verifies the release with the key it received at enrolment.
    public = serialization.load_pem_public_key(
        (stations["ws2"].config_dir / "central" / "model-signing.pub").read_bytes())
    public.verify(base64.b64decode(released["signature"]), released["manifest"].encode("ascii"))
    manifest = json.loads(released["manifest"])
    assert manifest == {"format": "fedxray-model-release/1", "version": "r1-1", "card": card,
                        "file_sha256": hashlib.sha256(payload).hexdigest(), "file_size": len(payload)}
    assert ws.get("/api/v1/models/released").json()["version"] == "r1-1"
    assert service.put("/api/v1/models/r1-1/file", content=b"tampered").status_code == 409


def test_health_and_prometheus_metrics(central, stations, supernodes):
    text = central.client(central.credential("admin")).get("/metrics").text
    assert "fedxray_superlink_up 1.0" in text
    assert 'fedxray_workstations{status="active"}' in text
    assert "fedxray_http_requests_total{" in text and 'route="/api/v1/admin/nodes"' in text
    assert 'fedxray_fleet_requests_total{rpc="pull-messages",status="200"}' in text


def test_api_docs_work_offline(central):
    """/docs loads every script and style sheet from the central itself (a hospital's central may have no
    internet access)."""
    import re

    with central.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
        for asset in assets:
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 100, asset


# ---------------------------------------------------------------- revoke, leave, restart
def test_a_revoked_node_is_cut_off(root, central, stations, supernodes):
    ws = stations["ws1"]
    node_id = ws.enrollment()["node_id"]
    _, credential = node_secrets(ws)
    assert supernodes["ws1"].proc.poll() is None
    result = central.admin("nodes", "revoke", str(node_id), "--json")
    assert json.loads(result.stdout)["status"] == "revoked"
    supernodes["ws1"].wait_exit(90)  # the running SuperNode is cut off (Flower stops it on the 401)
    assert "SuperNode terminated gracefully" in supernodes["ws1"].text()
    r = central.client(credential).get("/api/v1/workstation")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    node = nodes_by_id(central)[node_id]
    assert node["status"] == "revoked" and node["online"] is False
    status = json.loads(ws.fedxray("enroll", "--status", "--json").stdout)
    assert status["central_status"] == "ended" and status["reachable"] is True
    assert "no longer accepts this workstation" in status["problem"] and "enrol again" in status["problem"]
    # Its key can no longer join, even restarted.
    again = SuperNode(superlink=central.fleet_address, root_cert=central.ca_cert,
                      key=root / "ws1.key", log=root / "ws1-again.log")  # fmt: skip
    try:
        assert again.wait_exit(90) != 0
    finally:
        again.stop()
    assert "Exit Code: 305" in again.text() and "[code: 2004] Failed to activate SuperNode" in again.text()
    assert "SuperNode ID" not in again.text()
    assert central.admin("nodes", "revoke", str(node_id), check=False).returncode == 1  # already revoked


def test_leave_removes_the_secrets_and_tells_the_central(root, central):
    ws = Workstation(root / "careful", "careful")  # enrolled by the wrong-fingerprint test
    enrollment = ws.enrollment()
    result = ws.fedxray("leave")
    assert result.returncode == 0, result.stderr
    assert "central unregistered" in result.stdout
    for name in ("supernode-private-key", "api-credential"):
        assert keyring_secret(ws, f"{enrollment['keyring_id']}/{name}") is None
    assert not (ws.config_dir / "central").exists()
    assert nodes_by_id(central)[enrollment["node_id"]]["status"] == "left"
    assert json.loads(ws.fedxray("enroll", "--status", "--json").stdout) == {"enrolled": False}
    assert ws.fedxray("leave").returncode == 1  # nothing left to leave


def test_a_crashed_superlink_is_restarted_and_nodes_reconnect(central, stations, supernodes):
    runtime = json.loads((central.home / "runtime.json").read_text())
    os.kill(runtime["superlink_pid"], signal.SIGKILL)
    wait_for(lambda: "SuperLink exited with code -9; restarting" in central.log_text(), timeout=30,
             what="the supervisor to notice the crash")  # fmt: skip
    new_pid = wait_for(lambda: json.loads((central.home / "runtime.json").read_text())["superlink_pid"]
                       != runtime["superlink_pid"], timeout=60, what="a new SuperLink pid in runtime.json")
    assert new_pid
    health = central.client()
    wait_for(lambda: health.get("/health").json()["superlink"] == "up", timeout=90, what="SuperLink up again")
    ws2 = stations["ws2"].enrollment()["node_id"]
    wait_for(lambda: nodes_by_id(central)[ws2]["online"], timeout=120, interval=3, what="ws2 back online")


def test_restart_keeps_every_node_token_and_record(central, stations, supernodes):
    nodes_before = nodes_by_id(central)
    tokens_before = central.admin_json("token", "list")
    admin = central.client(central.credential("admin"))
    records_before = [admin.get(p).json() for p in ("/api/v1/runs", "/api/v1/models", "/api/v1/models/released")]
    superlink_pid = json.loads((central.home / "runtime.json").read_text())["superlink_pid"]

    central.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert central.proc.wait(60) == 0
    assert not Path(f"/proc/{superlink_pid}").exists() or "Z" in Path(f"/proc/{superlink_pid}/stat").read_text()
    assert not (central.home / "runtime.json").exists()
    central.start()

    nodes_after = nodes_by_id(central)
    assert set(nodes_after) == set(nodes_before)
    for node_id, before in nodes_before.items():
        after = nodes_after[node_id]
        for field in ("site", "status", "enrolled_at", "hostname", "revoked_at"):
            assert after[field] == before[field], (node_id, field)
    assert central.admin_json("token", "list") == tokens_before
    admin = central.client(central.credential("admin"))
    assert [admin.get(p).json() for p in ("/api/v1/runs", "/api/v1/models", "/api/v1/models/released")] == records_before
    assert admin.get("/api/v1/models/r1-1/file").status_code == 200
    _, credential = node_secrets(stations["ws2"])
    assert central.client(credential).get("/api/v1/workstation").json()["status"] == "active"
    # The SuperNode that kept running reconnects to the restarted SuperLink (its state is in the database).
    ws2 = stations["ws2"].enrollment()["node_id"]
    wait_for(lambda: nodes_by_id(central)[ws2]["online"], timeout=120, interval=3, what="ws2 back online")
    assert supernodes["ws2"].proc.poll() is None


# ---------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_central_on_postgresql_enrols_and_survives_a_restart(root, central, postgres_url):
    pg = CentralProcess(root / "pg-home", database_url=postgres_url).start()
    try:
        token = pg.create_token("Postgres Site")
        # This token pins the PostgreSQL central's CA: offered to the other central, it is refused.
        stray = Workstation(root / "stray", "stray")
        result = stray.fedxray("enroll", "--central", central.url, "--token", token["token"])
        assert result.returncode == 1 and "not the one IT gave you" in result.stderr
        ws = Workstation(root / "pgws", "pgws")
        assert enroll(ws, pg, token).returncode == 0
        node_id = ws.enrollment()["node_id"]
        assert nodes_by_id(pg)[node_id]["site"] == "Postgres Site"
        assert pg.stop() == 0
        assert not (pg.home / "central.db").exists()  # the records are in PostgreSQL
        pg.start()
        node = nodes_by_id(pg)[node_id]
        assert (node["site"], node["status"]) == ("Postgres Site", "active")
        assert [t["state"] for t in pg.admin_json("token", "list")] == ["used"]
        again = enroll(Workstation(root / "pgws2", "pgws2"), pg, token)
        assert again.returncode == 1 and "already been used" in again.stderr
        # Started without the URL, the home refuses to fall back to an empty SQLite file.
        bare = subprocess.run([*CentralProcess(pg.home).command()], capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in pg.env.items() if k != "FEDXRAY_CENTRAL_DATABASE_URL"})
        assert bare.returncode != 0 and "postgresql" in bare.stderr.lower()
    finally:
        pg.stop()
