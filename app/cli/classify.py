"""`fedxray classify`: probabilities, guardrail warnings and optional GradCAM overlays for image files and folders.

A thin client of app.core: the same model service, folder expansion, guardrails and overlays as the app's batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.cli.common import active_model_dir, fail


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify chest X-ray images (PNG, JPEG, BMP, TIFF, DICOM) or folders")
    p.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    p.add_argument("--model", type=Path, help="model folder (default: the model the app uses)")
    p.add_argument("--heatmap-dir", type=Path, help="write a GradCAM overlay PNG per image into this folder")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--engine", choices=("auto", "litert", "tensorflow"), default="auto",
                   help="auto (default): LiteRT when the model has its artefact, else TensorFlow")
    p.set_defaults(func=run)


def run(args) -> int:
    from app.core.batch import classify_files, expand
    from app.core.inference import InferenceService, ModelLoadError
    from fl.modelfile import INTENDED_USE

    items = expand(args.images)
    if not items:
        return fail("no image files found in the paths given")
    if args.heatmap_dir:
        try:
            args.heatmap_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail(f"cannot create the heatmap folder {args.heatmap_dir} ({exc.strerror or exc})")
    service = InferenceService(engine=args.engine)
    try:
        card = service.load(args.model or active_model_dir())
    except ModelLoadError as exc:
        return fail(f"cannot use the model: {exc}")
    if service.notice:
        print(f"Note: {service.notice}", file=sys.stderr)
    if card.demo and not args.json:
        print("Note: this is a DEMONSTRATION model, not for clinical use.", file=sys.stderr)
    failed = 0
    for row in classify_files(items, service, batch_size=max(1, args.batch_size), heatmap_dir=args.heatmap_dir):
        if row.error is not None:
            failed += 1
        if args.json:
            print(json.dumps(row.as_json()), flush=True)
        elif row.error is not None:
            print(f"{row.path}: ERROR: {row.error}", file=sys.stderr, flush=True)
        else:
            probs = "  ".join(f"{c}={p:.3f}" for c, p in row.probabilities.items())
            finding = f"  -- {row.assessment.finding}" if row.assessment and row.assessment.near_tie else ""
            print(f"{row.path}: {row.predicted} ({row.probability:.1%}){finding}  [{probs}]", flush=True)
            for message in row.warnings:
                print(f"  warning: {message}", flush=True)
            for code, message in (row.assessment.cautions if row.assessment else []):
                if code != "outside_intended_use":  # the guardrail warnings above already say so
                    print(f"  caution: {message}", flush=True)
    if not args.json:
        print(f"Model: {card.display_name}. {INTENDED_USE}", file=sys.stderr)
    return 1 if failed else 0
