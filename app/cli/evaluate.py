"""`fedxray evaluate`: all FedXray metrics of a model on a class-folder dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.cli.common import active_model_dir, fail


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a folder of class folders")
    p.add_argument("--data", type=Path, required=True, help="folder with Covid/, Normal/, Pneumonia-*/ folders")
    p.add_argument("--model", type=Path, help="model folder (default: the model the app uses)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--engine", choices=("auto", "litert", "tensorflow"), default="auto",
                   help="auto (default): LiteRT when the model has its artefact, else TensorFlow")
    p.set_defaults(func=run)


def format_report(m: dict, classes: list[str]) -> str:
    lines = [
        f"Examples: {m['num_examples']}   loss {m['loss']:.4f}   accuracy {m['accuracy']:.3f}",
        f"Macro: sensitivity {m['macro_sensitivity']:.3f}  specificity {m['macro_specificity']:.3f}  "
        f"precision {m['macro_precision']:.3f}  F1 {m['macro_f1']:.3f}  AUROC {_f(m.get('macro_auroc'))}",
        "",
        f"{'class':<22}{'n':>5}{'sens':>8}{'spec':>8}{'prec':>8}{'F1':>8}{'AUROC':>8}",
    ]
    for c in classes:
        pc = m["per_class"][c]
        lines.append(
            f"{c:<22}{pc['support']:>5}{pc['sensitivity']:>8.3f}{pc['specificity']:>8.3f}"
            f"{pc['precision']:>8.3f}{pc['f1']:>8.3f}{_f(pc.get('auroc')):>8}"
        )
    lines += ["", "Confusion matrix (rows: true, columns: predicted)", " " * 22 + "".join(f"{c[:8]:>9}" for c in classes)]
    for c, row in zip(classes, m["confusion_matrix"], strict=True):
        lines.append(f"{c:<22}" + "".join(f"{v:>9}" for v in row))
    if "adult_non_covid_n" in m:
        from fl.cohorts import format_cohorts

        lines += ["", "Source shortcut check (cohorts from the manifest's population column)", format_cohorts(m)]
    return "\n".join(lines)


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run(args) -> int:
    import numpy as np

    from app.core.inference import InferenceService, ModelLoadError
    from fl.cohorts import cohort_figures
    from fl.data import DatasetError, discover
    from fl.metrics import compute_metrics

    try:
        samples = discover(args.data)
    except DatasetError as exc:
        return fail(str(exc))
    if not samples:
        return fail(f"no images found in {args.data}")
    service = InferenceService(engine=args.engine)
    try:
        card = service.load(args.model or active_model_dir())
    except ModelLoadError as exc:
        return fail(f"cannot use the model: {exc}")
    if service.notice:
        print(f"Note: {service.notice}", file=sys.stderr)
    by_path = {str(s.path): s for s in samples}
    y, probs, populations, unreadable = [], [], [], []
    for item in service.classify_many([s.path for s in samples], batch_size=16, heatmaps=False):
        if isinstance(item, tuple):
            unreadable.append(item)
        else:
            y.append(by_path[item.source].label)
            populations.append(by_path[item.source].population)
            probs.append(item.probabilities)
    for src, exc in unreadable:
        print(f"{src}: left out: {exc}", file=sys.stderr)
    if not y:
        return fail(f"none of the {len(samples)} images in {args.data} could be read")
    m = compute_metrics(np.asarray(y), np.asarray(probs))
    if any(populations):  # the manifest says which images are adult and which paediatric
        m.update(cohort_figures(np.asarray(y), np.asarray(probs), populations))
    m["model"] = {"name": card.name, "version": card.version, "demo": card.demo, "engine": service.engine}
    m["unreadable"] = [src for src, _ in unreadable]
    if args.json:
        print(json.dumps(m))
    else:
        print(f"Model: {card.display_name}")
        print(format_report(m, list(card.classes)))
        if unreadable:
            print(f"{len(unreadable)} image(s) could not be read and were left out (see above).")
    return 1 if unreadable else 0
