"""The offline guarantee, sealed: the real app and `fedxray classify` run in a network namespace of their own.

Each run is a fresh process started under `unshare --net`: a new network namespace whose only interface is a
loopback that is down, so no packet can leave it by any route: Python, native code (Qt, TensorFlow, LiteRT),
or a child process. Inside, a Python audit hook (sys.addaudithook, installed before FedXray is imported)
records every socket operation CPython performs (creating a socket, bind, connect, sendto/sendmsg, name and
address lookups: every `socket.*` audit event) and, where strace is installed, strace records every
network-related system call of the process and all its threads and children. The tests assert that there
was no connection attempt, no datagram sent and no name lookup, and that the cycle still completed (results,
PDF and PNG written; classify's JSON lines). A canary run first proves the namespace is sealed: from inside it,
a TCP connect and a UDP datagram to listeners of this test on the host's loopback fail, the listeners receive
nothing, and a host name does not resolve.

Two operations are seen and allowed, each matched exactly (anything else fails the test):
- urllib3's import-time IPv6 check (urllib3.util.connection._has_ipv6): it creates an IPv6 socket and binds it
  to [::1] port 0, never connects or sends, and closes it. pydicom (pydicom.data.download) and TensorFlow
  (tf.python.keras.callbacks) import `requests`, which imports urllib3; in the namespace the bind fails with
  EADDRNOTAVAIL, which urllib3 takes as "no IPv6".
- glibc's look-up of the local name-service cache daemon (a Unix socket, /var/run/nscd/socket) when the process
  asks for its user's account (the home folder): a local file socket, absent here (ENOENT).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Installed first thing in every sealed process: every socket operation CPython audits is recorded.
AUDIT = textwrap.dedent("""
    import json, sys
    SOCKET_EVENTS = []
    def _audit(event, args):
        if event.startswith("socket."):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.endswith("/socket.py"):
                frame = frame.f_back
            origin = f"{frame.f_code.co_filename}:{frame.f_code.co_name}" if frame is not None else "?"
            SOCKET_EVENTS.append([event, repr(args)[:300], origin])
    sys.addaudithook(_audit)
""")

# What the process's own network namespace holds, read from /proc/self/net (files, no socket; /sys/class/net would
# show the namespace sysfs was mounted in): the interfaces, local IPv4 and IPv6 addresses, IPv4 routes.
INTERFACES = textwrap.dedent("""
    import json, sys
    def _net(name):
        with open(f"/proc/self/net/{name}") as fh:
            return fh.read().splitlines()
    print("INTERFACES " + json.dumps({
        "interfaces": sorted(line.split(":")[0].strip() for line in _net("dev")[2:]),
        "ipv4_addresses": sum("host LOCAL" in line for line in _net("fib_trie")),
        "ipv6_addresses": len(_net("if_inet6")),
        "ipv4_routes": len(_net("route")[1:]),
    }), flush=True)
""")

APP = AUDIT + INTERFACES + textwrap.dedent("""
    from pathlib import Path
    out, first, second = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    import app.ui.main_window as mw
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    seen = {"results": [], "step": 0}

    def finish(reason):
        ws = [w for w in QApplication.topLevelWidgets() if isinstance(w, mw.MainWindow)]
        if ws:
            seen["errors"] = [m.text for m in ws[0].notifier.messages if m.level == "error"]
            ws[0].close()
        seen["finished"] = reason
        QApplication.quit()

    def poll():
        ws = [w for w in QApplication.topLevelWidgets() if isinstance(w, mw.MainWindow)]
        if not ws:
            return
        w = ws[0]
        settled = w.document.state in ("result", "failed", "blocked") and w.runner.active == 0
        if seen["step"] in (0, 1) and settled:
            seen["results"].append({"state": w.document.state, "title": w.windowTitle(),
                                    "shown": w.case_page.result.shown_probabilities()})
            if seen["step"] == 0:
                w.open_image(second)          # the second image: opened from the running window
            else:
                w.controller.export_pdf(out / "report.pdf")
                w.controller.export_png(out / "overlay.png")
            seen["step"] += 1
        elif seen["step"] == 2 and w.runner.active == 0:
            finish("done")

    timer = QTimer()
    timer.timeout.connect(poll)
    from app.ui.launch import make_app
    make_app(sys.argv[:1])
    timer.start(50)
    QTimer.singleShot(280_000, lambda: finish("timed out"))
    from app.cli import main
    code = main([first])
    print("RESULT " + json.dumps(dict(seen, code=code, socket_events=SOCKET_EVENTS)), flush=True)
""")

CLI = AUDIT + INTERFACES + textwrap.dedent("""
    from app.cli import main
    code = main(sys.argv[1:])
    print("RESULT " + json.dumps({"code": code, "socket_events": SOCKET_EVENTS}), flush=True)
""")

CANARY = INTERFACES + textwrap.dedent("""
    import socket
    tcp_port, udp_port = int(sys.argv[1]), int(sys.argv[2])
    outcome = {}
    try:
        socket.create_connection(("127.0.0.1", tcp_port), timeout=3).close()
        outcome["tcp"] = "connected"
    except OSError as exc:
        outcome["tcp"] = f"refused: {exc.errno}"
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"canary", ("127.0.0.1", udp_port))
        outcome["udp"] = "sent"
    except OSError as exc:
        outcome["udp"] = f"refused: {exc.errno}"
    try:
        socket.getaddrinfo("pypi.org", 443)
        outcome["dns"] = "resolved"
    except OSError as exc:
        outcome["dns"] = f"failed: {exc.errno}"
    print("RESULT " + json.dumps(outcome), flush=True)
""")

STRACE = shutil.which("strace")
# The Python socket operations allowed (see the module docstring): urllib3's import-time IPv6 check, exactly.
IPV6_CHECK = "urllib3/util/connection.py:_has_ipv6"
# The traced system calls allowed (strace -e trace=network), the same two operations; every other line fails.
ALLOWED_CALLS = [re.compile(p) for p in (
    r"socket\(AF_INET6, SOCK_STREAM\|SOCK_CLOEXEC, IPPROTO_IP\) = \d+",                   # urllib3's IPv6 check
    r"getsockname\(\d+, \{sa_family=AF_INET6, .*",                                          # (on that socket)
    r"getpeername\(\d+, 0x[0-9a-f]+, \[28\]\) = -1 ENOTCONN .*",                             # (not connected)
    r'bind\(\d+, \{sa_family=AF_INET6, sin6_port=htons\(0\), .*"::1".* = -1 EADDRNOTAVAIL .*',
    r"socket\(AF_UNIX, SOCK_STREAM\|SOCK_CLOEXEC\|SOCK_NONBLOCK, 0\) = \d+",               # glibc: nscd?
    r'connect\(\d+, \{sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"\}, \d+\) = -1 ENOENT .*',
)]


def forbidden_socket_events(events) -> list:
    """The audited Python socket operations other than urllib3's IPv6 check (socket(AF_INET6) + bind [::1]:0)."""
    def allowed(event):
        name, args, origin = event
        return origin.endswith(IPV6_CHECK) and (
            (name == "socket.__new__" and args.endswith(", 10, 1, 0)"))
            or (name == "socket.bind" and args.endswith("('::1', 0))")))
    return [e for e in events if not allowed(e)]


def forbidden_calls(calls) -> list:
    """The traced network system calls outside ALLOWED_CALLS (strace's signal and exit lines are not calls)."""
    lines = [re.sub(r"^\d+\s+", "", c) for c in calls]
    return [c for c in lines if not c.startswith(("---", "+++"))
            and not any(p.fullmatch(c) for p in ALLOWED_CALLS)]


def _unshare_or_skip() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux's unshare is not installed: the sealed offline test needs it")
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("creating a network namespace is not permitted here (unshare --net needs root or "
                    f"unprivileged user namespaces): {probe.stderr.strip()}")
    return [unshare, "--net", "--"]


def sealed_run(script: str, args, *, tmp_path: Path, trace: bool = True, timeout: float = 400):
    """Run `script` with `args` in a fresh network namespace (under strace -f when installed); returns
    (the RESULT dict, the interfaces seen inside, the traced network system calls or None, the process)."""
    cmd = _unshare_or_skip()
    log = None
    if trace and STRACE:
        log = tmp_path / f"strace-{len(list(tmp_path.glob('strace-*')))}.txt"
        cmd += [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=network", "-o", str(log)]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.run([*cmd, sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    lines = proc.stdout.splitlines()
    result = next((json.loads(x[7:]) for x in lines if x.startswith("RESULT ")), None)
    interfaces = next((json.loads(x[11:]) for x in lines if x.startswith("INTERFACES ")), None)
    assert result is not None, f"no result (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    calls = [x for x in log.read_text().splitlines() if x.strip()] if log else None
    return result, interfaces, calls, proc


def assert_sealed(seen) -> None:
    """Only a loopback interface, and it is down: no address of any kind, no route."""
    assert seen == {"interfaces": ["lo"], "ipv4_addresses": 0, "ipv6_addresses": 0, "ipv4_routes": 0}, \
        f"the namespace is not sealed: {seen}"


def test_the_namespace_lets_nothing_out(tmp_path):
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tcp, udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        tcp.settimeout(0.5)
        udp.settimeout(0.5)
        result, interfaces, _, _ = sealed_run(CANARY, [tcp.getsockname()[1], udp.getsockname()[1]],
                                              tmp_path=tmp_path, trace=False, timeout=60)
        assert_sealed(interfaces)
        assert result["tcp"].startswith("refused") and result["udp"].startswith("refused"), result
        assert result["dns"].startswith("failed"), result
        with pytest.raises(TimeoutError):
            tcp.accept()
        with pytest.raises(TimeoutError):
            udp.recvfrom(100)


def test_app_open_classify_export_in_a_sealed_namespace(use_tiny_model, cxr, dicom_dir, tmp_path):
    """The real app (offscreen), launched as `fedxray IMAGE` is: opens a PNG, then a MONOCHROME1 DICOM from the
    window, classifies both with heatmaps (the active model, on its LiteRT artefact), writes the case to the
    history, exports the PDF report and the overlay PNG."""
    out = tmp_path / "exports"
    out.mkdir()
    result, interfaces, calls, proc = sealed_run(APP, [out, cxr["Covid"], dicom_dir / "RG1_UNCR.dcm"],
                                                 tmp_path=tmp_path)
    assert_sealed(interfaces)
    assert result["finished"] == "done" and result["code"] == 0, (result, proc.stderr[-3000:])
    assert [r["state"] for r in result["results"]] == ["result", "result"]
    assert result["results"][1]["title"].endswith("RG1_UNCR.dcm")
    assert all(abs(sum(r["shown"]) - 1.0) < 0.002 for r in result["results"])
    assert (out / "report.pdf").stat().st_size > 1000 and (out / "overlay.png").stat().st_size > 1000
    assert result["errors"] == []
    assert forbidden_socket_events(result["socket_events"]) == []   # no connect, send, lookup, other socket
    if calls is not None:
        assert forbidden_calls(calls) == []       # the same for every thread and child, native code included


@pytest.mark.parametrize("engine", ["litert", "tensorflow"])
def test_fedxray_classify_in_a_sealed_namespace(use_tiny_model, cxr, dicom_dir, tmp_path, engine):
    files = [cxr["Normal"], dicom_dir / "RG1_UNCR.dcm"]
    heat = tmp_path / "heat"
    result, interfaces, calls, proc = sealed_run(
        CLI, ["classify", *files, "--engine", engine, "--heatmap-dir", heat, "--json"], tmp_path=tmp_path)
    assert_sealed(interfaces)
    assert result["code"] == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    assert all(Path(r["heatmap"]).stat().st_size > 1000 for r in rows)
    assert forbidden_socket_events(result["socket_events"]) == []
    if calls is not None:
        assert forbidden_calls(calls) == []


def test_the_allowances_match_only_the_two_known_operations():
    """The two allowances let through urllib3's IPv6 check and glibc's nscd look-up, and nothing near them."""
    probe = "/x/site-packages/urllib3/util/connection.py:_has_ipv6"
    ok = [["socket.__new__", "(<socket.socket fd=-1, family=0, type=0, proto=0>, 10, 1, 0)", probe],
          ["socket.bind", "(<socket.socket fd=3, family=10>, ('::1', 0))", probe]]
    bad = [["socket.connect", "(<socket.socket fd=3>, ('192.0.2.1', 443))", probe],
           ["socket.__new__", "(<socket.socket fd=-1>, 2, 2, 0)", "/work/app/x.py:f"],       # UDP, elsewhere
           ["socket.sendto", "(<socket.socket fd=3>, ('192.0.2.1', 53))", "/work/app/x.py:f"],
           ["socket.getaddrinfo", "('example.org', 443, 0, 0, 0, 0)", "/work/app/x.py:f"],
           ["socket.bind", "(<socket.socket fd=3>, ('0.0.0.0', 8080))", probe]]
    assert forbidden_socket_events(ok) == [] and forbidden_socket_events(bad) == bad
    calls = ['12 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 5',
             '12 sendto(5, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("192.0.2.1")}, 16)'
             ' = -1 ENETUNREACH (Network is unreachable)',
             '12 connect(9, {sa_family=AF_UNIX, sun_path="/run/dbus/system_bus_socket"}, 110) = 0',
             '12 bind(3, {sa_family=AF_INET6, sin6_port=htons(8080), sin6_flowinfo=htonl(0), '
             'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 EADDRNOTAVAIL (Cannot assign)']
    assert forbidden_calls(calls) == [re.sub(r"^\d+\s+", "", c) for c in calls]
