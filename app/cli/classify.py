"""`fedxray classify`: probabilities, predicted class and optional GradCAM overlays for image files."""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from app.cli.common import active_model_dir, fail


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify chest X-ray images (PNG, JPEG, BMP, TIFF, DICOM) or folders")
    p.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument("--model", type=Path, help="model folder (default: the model the app uses)")
    p.add_argument("--heatmap-dir", type=Path, help="write a GradCAM overlay PNG per image into this folder")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=run)


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by the files inside them (recursively, sorted, hidden ones skipped)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                f for f in sorted(p.rglob("*"))
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and f.suffix.lower() not in {".csv", ".md", ".txt", ".json"}
            )
        else:
            out.append(p)
    return out


def _heatmap_path(folder: Path, source: str, used: set[str]) -> Path:
    stem = Path(source).stem or "image"
    name, n = f"{stem}.heatmap.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.heatmap.png"
    used.add(name)
    return folder / name


def classify_files(clf, files: list[Path], *, heatmap_dir: Path | None, batch_size: int) -> Iterator[dict]:
    """One record per file, in order: the classification (with the overlay PNG written when `heatmap_dir` is
    given) or {"file", "error"}. Overlays are encoded on a second thread while the next batch is computed."""
    used: set[str] = set()
    pending: deque[tuple[dict, Future | None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="overlay") as writer:
        for item in clf.classify_many(files, batch_size=batch_size, heatmaps=heatmap_dir is not None):
            if isinstance(item, tuple):
                pending.append(({"file": item[0], "error": str(item[1])}, None))
            else:
                record = item.as_dict(clf.classes)
                job = None
                if heatmap_dir is not None:
                    path = _heatmap_path(heatmap_dir, item.source, used)
                    record["heatmap"] = str(path)
                    job = writer.submit(_write_overlay, item, path)
                pending.append((record, job))
            while pending and (pending[0][1] is None or pending[0][1].done()):
                yield _finish(*pending.popleft())
        while pending:
            yield _finish(*pending.popleft())


def _finish(record: dict, job: Future | None) -> dict:
    if job is not None:
        try:
            job.result()
        except OSError as exc:
            return {"file": record["file"], "error": f"the heatmap could not be written: {exc}"}
    return record


def run(args) -> int:
    from fl.modelfile import ModelFileError, read_card

    model_dir = args.model or active_model_dir()
    try:
        read_card(model_dir)
    except ModelFileError as exc:
        return fail(f"cannot use the model: {exc}")
    files = expand(args.images)
    if not files:
        return fail("no image files found in the paths given")
    if args.heatmap_dir:
        args.heatmap_dir.mkdir(parents=True, exist_ok=True)

    from fl.inference import Classifier

    try:
        clf = Classifier(model_dir)
    except ModelFileError as exc:
        return fail(f"cannot use the model: {exc}")
    if clf.card.demo and not args.json:
        print("Note: this is a DEMONSTRATION model, not for clinical use.", file=sys.stderr)
    failed = 0
    for record in classify_files(clf, files, heatmap_dir=args.heatmap_dir, batch_size=args.batch_size):
        if "error" in record:
            failed += 1
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                print(f"{record['file']}: ERROR: {record['error']}", file=sys.stderr)
        elif args.json:
            print(json.dumps(record), flush=True)
        else:
            probs = "  ".join(f"{c}={p:.3f}" for c, p in record["probabilities"].items())
            print(f"{record['file']}: {record['predicted']} ({record['probability']:.1%})  [{probs}]")
    if not args.json:
        print(f"Model: {clf.card.display_name}. Decision support only, not a diagnosis.", file=sys.stderr)
    return 1 if failed else 0


def _write_overlay(pred, path: Path) -> Path:
    """Write the GradCAM overlay as PNG (fast compression: these are working images, not archives)."""
    from PIL import Image

    from fl.gradcam import overlay

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(overlay(pred.radiograph.pixels, pred.heatmap)).save(tmp, format="PNG", compress_level=1)
    tmp.replace(path)
    return path
