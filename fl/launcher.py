"""FedXray's ClientApp launcher: it takes the place of Flower's SuperExec beside a workstation's SuperNode
(`flower-supernode --isolation process`) and runs nothing but FedXray's own installed ClientApp.

For every message the SuperNode receives, the launcher claims its task on the SuperNode's local Runtime API
(signed with the SuperExec secret both were given, so no other local program can take messages). Before anything
runs, the run's app bundle (FAB) must be exactly the one this installation builds from `fl/flwr_app` (Flower
builds FABs deterministically) and must name only `fl.client_app:app` / `fl.server_app:app`. A FAB that is not
gets an error reply at once (nothing of it is installed or imported; a task never started would be retried
every 30 s and block the node), and the refusal is written to the local refusal log. An approved task runs in a
worker process that already imported TensorFlow and the ClientApp (a warm start): FedXray's installed code is
called directly, so the FAB is never installed or executed.

The workstation runs the pair as one program, so that neither can run without the other (a SuperNode whose
launcher is gone would accept messages nobody answers; Flower then reports the node unavailable instead):

    python -m fl.launcher node [--refusals FILE] -- FLOWER-SUPERNODE-ARGS...

starts `flower-supernode ... --isolation process --superexec-auth-secret-file F` (F: a fresh random secret in a
private folder, removed at exit) as its child, relays its output, claims and runs its tasks, and ends with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fl.app_bundle import fab_refusal, installed_fab

log = logging.getLogger("fedxray.launcher")

CLIENTAPP = "flwr-clientapp"
POLL_ENV = "FEDXRAY_LAUNCHER_POLL"  # seconds between claims on the SuperNode's loopback API
DEFAULT_POLL = 0.2
SPARE_NICE = 10  # the prepared worker starts at lower priority: it must not slow the clinician's classification
REFUSED = ("This workstation runs only the ClientApp of its installed FedXray; the run's app (FAB {fab}) is not "
           "that code, so nothing of it was installed or run.")  # fmt: skip


# ---------------------------------------------------------------- the Runtime API


def _runtime_client(address: str, *, token: str | None = None, secret: bytes | None = None):
    """Flower's HTTP client of the SuperNode's Runtime API (plain HTTP on loopback, as Flower's SuperExec)."""
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
        SuperExecAuthHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    interceptors = [RuntimeVersionHttpInterceptor(component_name="flwr-clientapp" if token else "SuperExec")]
    if token:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    if secret:
        interceptors.append(SuperExecAuthHttpInterceptor(master_secret=secret,
                                                         protected_methods=frozenset({"/flwr.proto.Runtime/AcquireTask"})))  # fmt: skip
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=True, root_certificates=None,
                                                 interceptors=interceptors,
                                                 retry_invoker=make_simple_http_retry_invoker())  # fmt: skip


def serve_task(address: str, token: str, *, app=None, refusals: Path | None = None, hint: Path | None = None) -> str:
    """Run one claimed task: pull its message, check its FAB, call FedXray's ClientApp (or refuse), push the
    reply and the task's end. Returns "completed", "refused" or "failed". `app` defaults to fl.client_app.app.
    With `hint`, the run's network (architecture and input size) is noted there for the next prepared worker."""
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

    client = _runtime_client(address, token=token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message = context = reply = None
    outcome, details = "failed", "the FedXray ClientApp failed"
    try:
        message, context, run, fab = pull_task_input(client)
        reason = fab_refusal(fab.hash_str, fab.content)
        if reason is not None:
            note_refusal(refusals, run_id=int(run.run_id), fab_hash=fab.hash_str, reason=reason)
            log.warning("Refused run %s: %s", run.run_id, reason)
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=REFUSED.format(fab=fab.hash_str[:12])),
                            reply_to=message)  # fmt: skip
            outcome, details = "refused", reason
        else:
            note_network(hint, context.run_config)
            if app is None:
                from fl.client_app import app
            reply = app(message=message, context=context)
            outcome, details = "completed", ""
    except Exception as exc:  # noqa: BLE001 - the SuperNode must get an answer whatever happened
        log.exception("The task failed")
        details = f"{type(exc).__name__}"
        if message is not None:
            from fl.privacy import SITE_ERROR

            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=SITE_ERROR.format(kind="launcher")),
                            reply_to=message)  # fmt: skip
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
            push_task_output(client=client, context=context,
                             sub_status=SubStatus.COMPLETED if outcome == "completed" else SubStatus.FAILED,
                             details=details)  # fmt: skip
        finally:
            heartbeat.stop()
            client.close()
    return outcome


def note_network(path: Path | None, run_config) -> None:
    """Note the run's network shape for the next prepared worker (which then builds it while it waits)."""
    if path is None:
        return
    with contextlib.suppress(Exception):  # a hint only: a task never fails for it
        from fl.task import RunSettings

        settings = RunSettings.from_config(run_config)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"arch": settings.arch, "input_size": int(settings.input_size)}), encoding="utf-8")
        os.replace(tmp, path)


def prepare_network(path: Path | None) -> None:
    """Build the network the last message's run used (fl.task.prepare_model), when a hint says which."""
    if path is None or not path.is_file():
        return
    try:
        shape = json.loads(path.read_text(encoding="utf-8"))
        from fl.task import prepare_model

        started = time.monotonic()
        prepare_model(str(shape["arch"]), int(shape["input_size"]))
        log.info("Prepared the %s network at %s px in %.1f s", shape["arch"], shape["input_size"],
                 time.monotonic() - started)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the task builds its own network then
        log.warning("Could not prepare the network from %s (%s)", path, exc)


def note_refusal(path: Path | None, **fields) -> None:
    """Append one refusal to the local refusal log (JSON lines)."""
    if path is None:
        return
    entry = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **fields}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


# ---------------------------------------------------------------- worker processes


def command(*args: str) -> list[str]:
    """How to start this module's entry point in a new process (source install or frozen bundle)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--fl-launcher", *args]
    return [sys.executable, "-m", "fl.launcher", *args]


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(SPARE_NICE)


@dataclass
class Worker:
    """A worker process that imported TensorFlow and the ClientApp and waits for one task's token."""

    proc: subprocess.Popen
    started: float

    @classmethod
    def start(cls, address: str, refusals: Path | None, env: dict[str, str] | None = None,
              hint: Path | None = None) -> Worker:  # fmt: skip
        args = ["worker", "--runtime-api-address", address, "--parent-pid", str(os.getpid())]
        if refusals is not None:
            args += ["--refusals", str(refusals)]
        if hint is not None:
            args += ["--hint", str(hint)]
        proc = subprocess.Popen(command(*args), stdin=subprocess.PIPE, text=True, env=env,
                                preexec_fn=_lower_priority if os.name == "posix" else None)  # fmt: skip
        return cls(proc, time.monotonic())

    def give(self, token: str) -> bool:
        """Hand the task's token over; False when the worker is gone."""
        try:
            self.proc.stdin.write(token + "\n")
            self.proc.stdin.close()
            with contextlib.suppress(OSError):  # the task runs at normal priority
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.getpriority(os.PRIO_PROCESS, os.getpid()))
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.alive():
                self.proc.kill()


def warm_up() -> None:
    """Import what every task needs (Flower, TensorFlow with its devices, Keras, FedXray's ClientApp) and build
    the approved FAB's hash, so that a task starts in about a second. The resource limits the agent put in the
    environment (fl.limits.limit_env) are applied before TensorFlow creates its devices."""
    import keras  # noqa: F401

    import fl.client_app  # noqa: F401
    from fl.limits import apply_limits

    apply_limits()
    installed_fab()


def exit_with_parent(parent_pid: int) -> None:
    """End this worker at once when its launcher is gone (its SuperNode went with it: nothing can be sent, and
    Flower's own monitor would leave it retrying the connection for ever)."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(args) -> int:
    """A worker: import the heavy parts now, then run the one task whose token arrives on stdin."""
    if args.parent_pid:
        exit_with_parent(args.parent_pid)
    warm_up()
    hint = Path(args.hint) if args.hint else None
    prepare_network(hint)
    token = sys.stdin.readline().strip()
    if not token:
        return 0  # the launcher ended without a task for us
    outcome = serve_task(args.runtime_api_address, token, refusals=Path(args.refusals) if args.refusals else None,
                         hint=hint)  # fmt: skip
    return 0 if outcome != "failed" else 1


# ---------------------------------------------------------------- the launcher loop


class Launcher:
    """Claims the SuperNode's ClientApp tasks one by one and runs each in a prepared worker (or refuses it)."""

    def __init__(self, address: str, *, secret: bytes | None, refusals: Path | None = None,
                 poll: float | None = None, warm: bool = True, hint: Path | None = None) -> None:  # fmt: skip
        self.address = address
        self.hint = hint  # where workers note the last run's network, which the next prepared worker builds
        self.secret = secret
        self.refusals = refusals
        self.poll = float(os.environ.get(POLL_ENV, DEFAULT_POLL)) if poll is None else poll
        self.warm = warm
        self.spare: Worker | None = None
        self.running: list[Worker] = []
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest

        installed_fab()  # before the first task: a broken installation fails here, not per message
        client = _runtime_client(self.address, secret=self.secret)
        try:
            while not self._stop.is_set():
                self._reap()
                if self.warm and self.spare is None and not self.running:
                    self.spare = Worker.start(self.address, self.refusals, hint=self.hint)  # after the task ended
                res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[CLIENTAPP]))
                if res.HasField("task") and res.token:
                    self._dispatch(res.token, res.task)
                else:
                    self._stop.wait(self.poll)
        finally:
            client.close()
            self.close_workers()

    def close_workers(self) -> None:
        for worker in [*self.running, *([self.spare] if self.spare else [])]:
            worker.stop()

    def _reap(self) -> None:
        self.running = [w for w in self.running if w.alive()]
        if self.spare is not None and not self.spare.alive():
            log.warning("The prepared ClientApp worker exited (code %s); a new one is started", self.spare.proc.returncode)
            self.spare = None

    def _dispatch(self, token: str, task) -> None:
        fab_hash = task.fab_hash if task.HasField("fab_hash") else None
        reason = fab_refusal(fab_hash)
        if reason is not None:  # answered here at once, without a worker: nothing of the FAB is loaded
            log.warning("Run %s: %s", task.run_id, reason)
            threading.Thread(target=serve_task, args=(self.address, token), kwargs={"refusals": self.refusals},
                             name="refuse", daemon=True).start()  # fmt: skip
            return
        worker, self.spare = self.spare, None
        if worker is None or not worker.give(token):
            worker = Worker.start(self.address, self.refusals, hint=self.hint)
            worker.give(token)
        self.running.append(worker)
        log.info("Run %s: task %s handed to ClientApp worker %d", task.run_id, task.task_id, worker.proc.pid)


def _die_with_parent() -> None:
    """In the SuperNode child (Linux): SIGTERM it when the launcher that started it dies, even by SIGKILL."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supernode_args(args: list[str]) -> tuple[list[str], str]:
    """The SuperNode's command line (process isolation added) and its Runtime API address."""
    if "--isolation" in args or "--superexec-auth-secret-file" in args:
        raise SystemExit("fl.launcher node sets --isolation and --superexec-auth-secret-file itself")
    port = args[args.index("--port") + 1] if "--port" in args else "9094"
    return list(args), f"127.0.0.1:{port}"


def node_main(args) -> int:
    """Run the SuperNode with this launcher beside it; end together (see the module docstring)."""
    import shutil
    import tempfile

    from fl.processes import bin_dir

    supernode, address = supernode_args(args.supernode)
    folder = Path(tempfile.mkdtemp(prefix="fedxray-superexec-"))  # 0700
    secret_file = folder / "secret"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    exe = supernode[0] if supernode and not supernode[0].startswith("-") else str(bin_dir() / "flower-supernode")
    rest = supernode[1:] if supernode and not supernode[0].startswith("-") else supernode
    cmd = [exe, *rest, "--isolation", "process", "--superexec-auth-secret-file", str(secret_file)]
    node = subprocess.Popen(cmd, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    launcher = Launcher(address, secret=secret_file.read_bytes(), refusals=Path(args.refusals) if args.refusals else None,
                        hint=folder / "network.json")  # fmt: skip
    stop = threading.Event()

    def on_term(*_):
        stop.set()
        with contextlib.suppress(ProcessLookupError):
            node.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # The loop runs on a daemon thread: a claim stuck retrying towards a SuperNode that is gone cannot keep
    # this process alive; the pair ends when the SuperNode ends.
    if _wait_listening(address, node):
        threading.Thread(target=launcher.run, name="launcher", daemon=True).start()
    try:
        while node.poll() is None and not stop.is_set():
            stop.wait(0.5)
    finally:
        launcher.stop()
        if node.poll() is None:
            node.terminate()
            try:
                node.wait(15)
            except subprocess.TimeoutExpired:
                node.kill()
        launcher.close_workers()
        shutil.rmtree(folder, ignore_errors=True)
    code = node.wait()
    return 0 if stop.is_set() else code


def _wait_listening(address: str, node: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Wait until the SuperNode's Runtime API accepts connections (False: the SuperNode ended first)."""
    import socket

    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
            return True
        time.sleep(0.2)
    return node.poll() is None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fl.launcher", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode")
    node = sub.add_parser("node", help="run a SuperNode with this launcher beside it")
    node.add_argument("--refusals", help="JSON-lines file of refused runs")
    node.add_argument("supernode", nargs=argparse.REMAINDER, help="-- then flower-supernode's arguments")
    for name in ("launch", "worker"):
        q = sub.add_parser(name)
        q.add_argument("--runtime-api-address", required=True)
        q.add_argument("--refusals", help="JSON-lines file of refused runs")
        q.add_argument("--parent-pid", type=int)
        q.add_argument("--hint", help="file where tasks note their run's network, built ahead by the next worker")
        if name == "launch":
            q.add_argument("--secret-file", help="the SuperExec secret shared with the SuperNode")
            q.add_argument("--cold", action="store_true", help="no prepared worker (start one per task)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    if args.mode == "node":
        if args.supernode[:1] == ["--"]:
            args.supernode = args.supernode[1:]
        return node_main(args)
    if args.mode == "worker":
        return worker_main(args)
    if args.mode != "launch":
        p.error("choose node, launch or worker")
    if args.parent_pid:
        from flwr.supercore.app_utils import start_parent_process_monitor

        start_parent_process_monitor(args.parent_pid)
    secret = Path(args.secret_file).read_bytes() if args.secret_file else None
    launcher = Launcher(args.runtime_api_address, secret=secret,
                        refusals=Path(args.refusals) if args.refusals else None, warm=not args.cold,
                        hint=Path(args.hint) if args.hint else None)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: launcher.stop())
    launcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
