"""Where the ServerApp records a run: a local directory (JSON lines + model folders) and, when the central service
launched it, the central's HTTP API.

The central passes its API to the SuperLink (hence the ServerApp) through environment variables, never through
the run config (which every SuperNode can read):
  FEDXRAY_CENTRAL_API          base URL, e.g. https://127.0.0.1:8443
  FEDXRAY_SERVICE_TOKEN        the service credential (or FEDXRAY_SERVICE_TOKEN_FILE: a file holding it)
  FEDXRAY_CENTRAL_CA           CA certificate that the API's TLS certificate must chain to
  FEDXRAY_RECORD_DIR           local directory for runs and model folders (default: the user data folder)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("fedxray.recorder")


class RecorderError(Exception):
    """The run could not be recorded; the message says where and why."""


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Recorder:
    """What the ServerApp reports; every method of this base class does nothing."""

    def run_started(self, *, flower_run_id: int, num_rounds: int, min_sites: int, config: dict) -> str | None:
        """Record the start; may return a label for the run (used in model version names)."""
        return None

    def reply_received(self, audit: Mapping[str, Any]) -> None:
        """One ClientApp reply as the server saw it (records, metric keys, array names/shapes/dtypes, verdict)."""

    def round_finished(self, *, server_round: int, num_sites: int, train_metrics: dict | None,
                       evaluate_metrics: dict | None, server_metrics: dict | None) -> None:  # fmt: skip
        """Aggregated metrics of one round (round 0: the initial model's server-side evaluation)."""

    def model_version(
        self, *, version: str, model_dir: Path, card: dict, server_round: int, is_best: bool
    ) -> None:
        """A global model saved as a version (folder with weights.safetensors and card.json)."""

    def run_finished(self, *, status: str, message: str | None = None, summary: dict | None = None) -> None:
        """The run ended: status "finished", "failed" or "interrupted" (stopped from outside; the central resumes it)."""


class LocalRecorder(Recorder):
    """<root>/run-<flower run id>/: run.json, rounds.jsonl, replies.jsonl, models/<version>/, best.json."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.run_dir: Path | None = None
        self._run: dict = {}

    def models_dir(self) -> Path:
        if self.run_dir is None:
            raise RecorderError("run_started was not called")
        return self.run_dir / "models"

    def run_started(self, *, flower_run_id, num_rounds, min_sites, config) -> str:
        self.run_dir = self.root / f"run-{int(flower_run_id)}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run = {"flower_run_id": int(flower_run_id), "status": "running", "num_rounds": num_rounds,
                     "min_sites": min_sites, "config": config, "started": time.time()}  # fmt: skip
        _atomic_json(self.run_dir / "run.json", self._run)
        return f"run{int(flower_run_id)}"

    def _append(self, name: str, row: Mapping) -> None:
        with open(self.models_dir().parent / name, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def reply_received(self, audit) -> None:
        self._append("replies.jsonl", dict(audit))

    def round_finished(
        self, *, server_round, num_sites, train_metrics, evaluate_metrics, server_metrics
    ) -> None:
        self._append("rounds.jsonl", {"server_round": server_round, "num_sites": num_sites, "time": time.time(),
                                      "train_metrics": train_metrics, "evaluate_metrics": evaluate_metrics,
                                      "server_metrics": server_metrics})  # fmt: skip

    def model_version(self, *, version, model_dir, card, server_round, is_best) -> None:
        self._append("versions.jsonl", {"version": version, "server_round": server_round, "dir": str(model_dir),
                                        "is_best": is_best})  # fmt: skip
        if is_best:
            _atomic_json(
                self.models_dir().parent / "best.json", {"version": version, "server_round": server_round}
            )

    def run_finished(self, *, status, message=None, summary=None) -> None:
        if self.run_dir is None:
            return
        self._run.update(status=status, message=message, summary=summary, finished=time.time())
        _atomic_json(self.run_dir / "run.json", self._run)


class HttpRecorder(Recorder):
    """Posts to the central API (routes in /api/v1/runs and /api/v1/models). Calls that fail because the central
    is unreachable or restarting are kept in order and retried at the next call, so a restart loses nothing."""

    def __init__(self, base_url: str, token: str, *, ca_file: str | None = None, central_run_id: int = 0,
                 timeout: float = 30.0, patience: float = 120.0) -> None:  # fmt: skip
        import ssl

        import httpx

        self.base_url = base_url.rstrip("/")
        self.run_id: int | None = central_run_id or None
        self.patience = patience
        self._pending: list[tuple[str, Callable[[], None]]] = []
        self._replies: dict[int, list[dict]] = {}  # by round, sent with the round's record
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify,
                                    headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    # -- transport
    def _call(self, method: str, path: str, *, ok=(200, 201), **kwargs):
        import httpx

        response = self._client.request(method, path, **kwargs)
        if response.status_code in ok:
            return response
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise httpx.TransportError(f"HTTP {response.status_code}")  # retried
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise RecorderError(f"the central refused {method} {path}: HTTP {response.status_code} {detail}")

    def _submit(self, what: str, op: Callable[[], None], *, patience: float | None = None) -> None:
        """Run the pending calls then `op`, in order; on a transport failure keep them for later."""
        import httpx

        self._pending.append((what, op))
        deadline = time.monotonic() + (self.patience if patience is None else patience)
        delay = 1.0
        while self._pending:
            name, pending = self._pending[0]
            try:
                pending()
            except (httpx.TransportError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    log.error("Central API unreachable (%s); %d record(s) kept for later, last: %s",
                              exc, len(self._pending), name)  # fmt: skip
                    return
                time.sleep(delay)
                delay = min(delay * 2, 15.0)
                continue
            except RecorderError as exc:  # a refusal will not change by retrying: report it and go on
                log.error("Dropped record %s: %s", name, exc)
            self._pending.pop(0)

    # -- Recorder
    def run_started(self, *, flower_run_id, num_rounds, min_sites, config) -> str | None:
        def op() -> None:
            if self.run_id is None:
                body = {"num_rounds": num_rounds, "min_sites": min_sites, "config": config,
                        "flower_run_id": int(flower_run_id)}  # fmt: skip
                self.run_id = int(self._call("POST", "/api/v1/runs", json=body).json()["id"])
            self._call("PATCH", f"/api/v1/runs/{self.run_id}",
                       json={"status": "running", "flower_run_id": int(flower_run_id)})  # fmt: skip

        self._submit("run start", op)
        return f"run{self.run_id}" if self.run_id is not None else None

    def reply_received(self, audit) -> None:
        """Kept until the round is recorded: the central learns which sites took part (and how) per round."""
        if audit.get("verdict") not in ("accepted", "refused", "error", "declined"):
            return
        row = {"node_id": int(audit["node_id"]), "phase": "train" if audit["phase"] == "train" else "evaluate",
               "verdict": audit["verdict"]}  # fmt: skip
        if audit.get("arrays_sha256"):
            row["arrays_sha256"] = audit["arrays_sha256"]
        self._replies.setdefault(int(audit["round"]), []).append(row)

    def round_finished(
        self, *, server_round, num_sites, train_metrics, evaluate_metrics, server_metrics
    ) -> None:
        body = {"num_sites": num_sites, "train_metrics": train_metrics, "evaluate_metrics": evaluate_metrics,
                "server_metrics": server_metrics, "replies": self._replies.pop(int(server_round), None)}  # fmt: skip
        body = {k: v for k, v in body.items() if v is not None}
        self._submit(
            f"round {server_round}",
            lambda: self._call("PUT", f"/api/v1/runs/{self.run_id}/rounds/{server_round}", json=body),
        )

    def model_version(self, *, version, model_dir, card, server_round, is_best) -> None:
        weights = Path(model_dir) / card["weights"]["file"]

        def op() -> None:
            body = {"version": version, "card": card, "run_id": self.run_id, "server_round": server_round,
                    "is_best": is_best}  # fmt: skip
            self._call(
                "POST", "/api/v1/models", json=body, ok=(201, 409)
            )  # 409: created before a lost answer
            self._call("PUT", f"/api/v1/models/{version}/file", content=weights.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            if is_best:
                self._call("PATCH", f"/api/v1/models/{version}", json={"is_best": True})

        self._submit(f"model {version}", op)

    def run_finished(self, *, status, message=None, summary=None) -> None:
        body = {"status": status} | ({"message": message[:4000]} if message else {})
        # An interrupted ServerApp is being stopped (the central may be going down): do not hold it up.
        patience = 10.0 if status == "interrupted" else max(self.patience, 600.0)
        self._submit("run end", lambda: self._call("PATCH", f"/api/v1/runs/{self.run_id}", json=body),
                     patience=patience)  # fmt: skip
        if self._pending:
            log.error("%d record(s) could not reach the central: %s", len(self._pending),
                      ", ".join(n for n, _ in self._pending))  # fmt: skip
        self._client.close()


class MultiRecorder(Recorder):
    """Fans every call out to several recorders (the local one first); the run label of the last that gives one."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def run_started(self, **kwargs) -> str | None:
        labels = [r.run_started(**kwargs) for r in self.recorders]
        return next((label for label in reversed(labels) if label), None)

    def reply_received(self, audit) -> None:
        for r in self.recorders:
            r.reply_received(audit)

    def round_finished(self, **kwargs) -> None:
        for r in self.recorders:
            r.round_finished(**kwargs)

    def model_version(self, **kwargs) -> None:
        for r in self.recorders:
            r.model_version(**kwargs)

    def run_finished(self, **kwargs) -> None:
        for r in self.recorders:
            r.run_finished(**kwargs)


def default_record_dir() -> Path:
    """FEDXRAY_RECORD_DIR, else <user data folder>/fedxray/federated-runs."""
    if os.environ.get("FEDXRAY_RECORD_DIR"):
        return Path(os.environ["FEDXRAY_RECORD_DIR"])
    import platformdirs

    return Path(platformdirs.user_data_dir("fedxray", appauthor=False)) / "federated-runs"


def open_recorder(
    *, central_run_id: int = 0, env: Mapping[str, str] = os.environ
) -> tuple[Recorder, LocalRecorder]:
    """The recorder the environment asks for, and the local one (which also holds the model folders)."""
    local = LocalRecorder(
        Path(env["FEDXRAY_RECORD_DIR"]) if env.get("FEDXRAY_RECORD_DIR") else default_record_dir()
    )
    url = env.get("FEDXRAY_CENTRAL_API")
    if not url:
        return local, local
    token = env.get("FEDXRAY_SERVICE_TOKEN")
    if not token and env.get("FEDXRAY_SERVICE_TOKEN_FILE"):
        token = Path(env["FEDXRAY_SERVICE_TOKEN_FILE"]).read_text(encoding="utf-8").strip()
    if not token:
        raise RecorderError("FEDXRAY_CENTRAL_API is set but neither FEDXRAY_SERVICE_TOKEN nor "
                            "FEDXRAY_SERVICE_TOKEN_FILE gives the service credential")  # fmt: skip
    http = HttpRecorder(url, token, ca_file=env.get("FEDXRAY_CENTRAL_CA"), central_run_id=central_run_id)
    return MultiRecorder(local, http), local
