"""`fedxray models list|update|rollback`: installed models, signed updates from the central, going back."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from app.core.errors import AppError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="installed models; update to the central's released model",
                              description="Installed models, updates from the FedXray central, rollback.")  # fmt: skip
    sub = p.add_subparsers(dest="models_command", required=True, metavar="{list,update,rollback}")
    listing = sub.add_parser("list", help="installed models and which one is active")
    update = sub.add_parser(
        "update", help="install the model the central released (signature and hash verified)",
        description="Download the model the central released, verify its signature (with the key received at "
        "enrolment) and its SHA-256, compare it with the current model on the local labelled set, and install "
        "it as the active model. The previous model is kept: `fedxray models rollback` returns to it.",
    )  # fmt: skip
    update.add_argument("--yes", action="store_true", help="install without asking for confirmation")
    update.add_argument("--data", type=Path, help="compare on this class-folder set instead of the local labelled set")
    update.add_argument("--no-evaluate", action="store_true", help="skip the comparison on labelled images")
    rollback = sub.add_parser("rollback", help="return to the model that was active before the last update")
    for q in (listing, update, rollback):
        q.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(func=run_list)
    update.set_defaults(func=run_update)
    rollback.set_defaults(func=run_rollback)


def _emit(args: argparse.Namespace, data: dict | list, human: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(human)


def _fail(args: argparse.Namespace, message: str) -> int:
    if args.json:
        json.dump({"ok": False, "error": message}, sys.stdout)
        sys.stdout.write("\n")
    print(f"fedxray: {message}", file=sys.stderr)
    return 1


def _describe(model) -> dict:
    card = model.card
    return {"id": model.id, "name": card.name, "version": card.version, "arch": card.arch,
            "input_size": card.input_size, "bundled": model.bundled, "demo": card.demo, "dir": str(model.dir),
            "sha256": card.weights.get("sha256")}  # fmt: skip


# ---------------------------------------------------------------- list
def run_list(args: argparse.Namespace) -> int:
    from app.core.model_update import active_or_none, read_state
    from app.core.models import ModelStore

    store = ModelStore()
    active = active_or_none(store)
    previous = read_state().get("previous")
    rows = [{**_describe(m), "active": active is not None and m.id == active.id, "rollback_target": m.id == previous}
            for m in store.list()]  # fmt: skip
    if not rows:
        return _fail(args, "No model is installed. Install one with `fedxray models update` (enrolled "
                           "workstations) or import a model folder in the app's Settings.")  # fmt: skip
    lines = [["*" if r["active"] else "", r["id"], r["name"], r["version"], r["arch"], str(r["input_size"]),
              "bundled" if r["bundled"] else "installed"] for r in rows]  # fmt: skip
    human = _table(lines, ["", "ID", "NAME", "VERSION", "ARCH", "INPUT", "SOURCE"]) + "\n(* = active)"
    if previous and any(r["rollback_target"] for r in rows):
        human += f"\n`fedxray models rollback` returns to {previous}."
    _emit(args, rows, human)
    return 0


# ---------------------------------------------------------------- update
def _metric(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3f}"


def comparison_table(current: dict | None, new: dict, current_label: str, new_label: str) -> str:
    """Old versus new metrics on the labelled images, one row per metric."""
    rows = [("accuracy", "accuracy"), ("macro-F1", "macro_f1")]
    lines = [[name, _metric((current or {}).get(key)), _metric(new.get(key))] for name, key in rows]
    for cls, value in new["sensitivity"].items():
        support = new["support"].get(cls, 0)
        old = (current or {}).get("sensitivity", {}).get(cls)
        lines.append([f"sensitivity {cls} (n={support})", _metric(old), _metric(value)])
    return _table(lines, ["", f"current: {current_label}", f"new: {new_label}"])


def _table(rows: list[list[str]], header: list[str]) -> str:
    """A plain text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


def _evaluate(folder: Path, current, args: argparse.Namespace) -> tuple[dict | None, list[str]]:
    """Compare current and new on the labelled images (and prove the new model loads); returns (report, notes)."""
    from app.core.model_update import ModelUpdateError, evaluate, local_samples

    notes: list[str] = []
    found = None if args.no_evaluate else local_samples(args.data)
    if found is None:
        from fl.modelfile import ModelFileError, load_model

        try:
            load_model(folder)  # the new model must load before it replaces a working one
        except (ModelFileError, ValueError) as exc:
            raise ModelUpdateError(f"The released model cannot be loaded ({exc}); it is not installed.") from exc
        if not args.no_evaluate:
            notes.append("No local labelled set yet (confirm or correct cases in the app to build one): the models "
                         "were not compared.")  # fmt: skip
        return None, notes
    root, samples = found
    print(f"Comparing the models on {len(samples)} labelled images in {root} …", file=sys.stderr)
    try:
        new = evaluate(folder, samples)
    except Exception as exc:  # noqa: BLE001 - any failure to run the new model refuses it
        raise ModelUpdateError(f"The released model cannot be run ({exc}); it is not installed.") from exc
    old = None
    if current is not None:
        try:
            old = evaluate(current.dir, samples)
        except Exception as exc:  # noqa: BLE001 - the current model's own trouble must not block the update
            notes.append(f"The current model could not be evaluated ({exc}).")
    return {"data": str(root), "num_images": len(samples), "current": old, "new": new}, notes


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise AppError("Installing needs a confirmation: run `fedxray models update --yes` to install without asking.")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def run_update(args: argparse.Namespace) -> int:
    from app.core import model_update as mu
    from app.core.models import ModelStore

    store = ModelStore()
    try:
        enrollment = mu.require_enrollment()
        release = mu.fetch_release(enrollment)
        current = mu.active_or_none(store)
        label = f"{release.card.get('name', 'model')} {release.version}"
        info = {"version": release.version, "name": release.card.get("name"), "sha256": release.file_sha256,
                "released_at": release.released_at, "signature": "verified"}  # fmt: skip
        if current is not None and current.card.weights.get("sha256") == release.file_sha256:
            _emit(args, {"ok": True, "status": "up-to-date", "release": info, "model_id": current.id},
                  f"Already up to date: the active model is the released {label}.")
            return 0
        folder = mu.download_dir(store)
        try:
            mu.download(enrollment, release, folder)
            if not args.json:
                print(f"Released model: {label} (released {str(release.released_at)[:19]}).\n"
                      "Signature verified with the central's model-signing key; file SHA-256 "
                      f"{release.file_sha256} verified.")  # fmt: skip
            report, notes = _evaluate(folder, current, args)
            current_label = current.card.display_name if current is not None else "none"
            if not args.json:
                if report is not None:
                    print(f"\nOn {report['num_images']} labelled images ({report['data']}):")
                    print(comparison_table(report["current"], report["new"], current_label, label) + "\n")
                for note in notes:
                    print(note)
            if not args.yes and not _confirm(f"Install {label} and make it the active model?"):
                _emit(args, {"ok": True, "status": "cancelled", "release": info, "evaluation": report},
                      "Cancelled; nothing was changed.")  # fmt: skip
                return 0
            installed, previous = mu.install(folder, store=store)
        finally:
            mu.discard(folder)
    except AppError as exc:
        return _fail(args, str(exc))
    out = {"ok": True, "status": "installed", "release": info, "model_id": installed.id, "previous": previous,
           "evaluation": report, "notes": notes}  # fmt: skip
    human = f"Installed {label} as {installed.id!r}; it is now the active model."
    if previous:
        human += f"\nThe previous model ({previous}) is kept: `fedxray models rollback` returns to it."
    _emit(args, out, human)
    return 0


# ---------------------------------------------------------------- rollback
def run_rollback(args: argparse.Namespace) -> int:
    from app.core.model_update import rollback

    try:
        now, before = rollback()
    except AppError as exc:
        return _fail(args, str(exc))
    out = {"ok": True, "active": _describe(now), "replaced": before.id if before is not None else None}
    human = f"The active model is again {now.card.display_name} ({now.id})."
    if before is not None:
        human += f"\n{before.id} stays installed: `fedxray models rollback` again returns to it."
    _emit(args, out, human)
    return 0
