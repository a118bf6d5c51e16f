"""`fedxray-central models list|release`: the global model versions the federation produced, and releases."""

from __future__ import annotations

import argparse
import json
import math

from central.cli.admin_client import AdminClient, AdminError
from central.cli.common import add_home, add_json, emit, table
from central.crud.models import key_metrics
from central.home import resolve_home

RELEASE_TIMEOUT_S = 960.0  # the release makes the LiteRT artefact first (central.artefacts allows 900 s)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="model versions and releases",
                              description="Model versions saved by federated runs, and the released one.")  # fmt: skip
    sub = p.add_subparsers(dest="models_command", required=True, metavar="{list,release}")
    listing = sub.add_parser("list", help="version, created, run, round, key metrics, best, released")
    release = sub.add_parser(
        "release",
        help="sign a version with the model-signing key: workstations install it with `fedxray models update`",
        description="Release a model version: the central signs its manifest (version, SHA-256 of the file, "
        "model card) with its model-signing key, after making its LiteRT artefact (workstations classify with it "
        "without TensorFlow; about 30 s for SE-ResNet50V2 the first time). Workstations install the newest release with "
        "`fedxray models update`; releasing another version supersedes the current one.",
    )
    release.add_argument("version", help="the version to release (from `models list`)")
    for q in (listing, release):
        add_home(q)
        add_json(q)
    listing.set_defaults(func=list_models)
    release.set_defaults(func=release_model)


def fmt(value, digits: int = 3) -> str:
    """A metric for a table: '0.812', or '-' when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def current_release(client: AdminClient) -> dict | None:
    """The released model (signed manifest), or None when nothing has been released."""
    try:
        return client.request("GET", "/api/v1/models/released")
    except AdminError as exc:
        if "(404)" in str(exc):
            return None
        raise


def summarize(model: dict, released_version: str | None) -> dict:
    """What `models list --json` prints for one version."""
    card = model.get("card") or {}
    release = None
    if model["released_at"] is not None:
        release = "current" if model["version"] == released_version else "superseded"
    return {
        "version": model["version"], "name": card.get("name"), "arch": card.get("arch"),
        "input_size": card.get("input_size"), "created_at": model["created_at"], "run_id": model["run_id"],
        "server_round": model["server_round"], "metrics": key_metrics(card),
        "participating_sites": (card.get("federation") or {}).get("participating_sites"),
        "is_best": model["is_best"], "released_at": model["released_at"], "release": release,
        "file_sha256": model["file_sha256"], "file_size": model["file_size"],
    }  # fmt: skip


def list_models(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home)) as client:
        models = client.request("GET", "/api/v1/models")
        released = current_release(client)
    rows = [summarize(m, released["version"] if released else None) for m in models]
    lines = [[r["version"], str(r["created_at"])[:19], fmt(r["run_id"]), fmt(r["server_round"]),
              fmt(r["metrics"]["accuracy"]), fmt(r["metrics"]["macro_f1"]), r["metrics"]["source"] or "-",
              "yes" if r["is_best"] else "", {"current": "RELEASED", "superseded": "superseded"}.get(r["release"], ""),
              "" if r["file_sha256"] else "no file yet"] for r in rows]  # fmt: skip
    header = ["VERSION", "CREATED", "RUN", "ROUND", "ACCURACY", "MACRO-F1", "MEASURED ON", "BEST", "RELEASE", ""]
    human = table(lines, header) if lines else "No model versions yet: they appear as federated runs finish rounds."
    emit(args, rows, human)
    return 0


def release_model(args: argparse.Namespace) -> int:
    with AdminClient(resolve_home(args.home), timeout=RELEASE_TIMEOUT_S) as client:
        before = current_release(client)
        try:
            data = client.request("POST", f"/api/v1/models/{args.version}/release")
        except AdminError as exc:
            if "(404)" in str(exc) or "(422)" in str(exc):
                raise AdminError(f"There is no model version {args.version!r}; nothing was released. "
                                 "See the versions with: fedxray-central models list") from None  # fmt: skip
            raise
    litert = (json.loads(data["manifest"])["card"].get("inference") or {}).get("sha256")
    superseded = before["version"] if before and before["version"] != data["version"] else None
    out = {"version": data["version"], "file_sha256": data["file_sha256"], "file_size": data["file_size"],
           "released_at": data["released_at"], "signature": data["signature"], "manifest": data["manifest"],
           "superseded": superseded, "litert_sha256": litert}  # fmt: skip
    human = (f"Released model version {data['version']} (SHA-256 {data['file_sha256']}), signed with the "
             "central's model-signing key.")  # fmt: skip
    if superseded:
        human += f"\nIt supersedes {superseded}."
    elif before and before["version"] == data["version"]:
        human += "\nIt was already the released version; its release was signed again."
    human += (f"\nIts LiteRT artefact (SHA-256 {litert}) is signed with it." if litert else
              "\nIts LiteRT artefact could not be made (see the audit log); workstations make their own.")
    human += "\nWorkstations install it with: fedxray models update"
    emit(args, out, human)
    return 0
