"""`fedxray evaluate`: all FedXray metrics of a model on a class-folder dataset."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli.common import active_model_dir, fail


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a folder of class folders")
    p.add_argument("--data", type=Path, required=True, help="folder with Covid/, Normal/, Pneumonia-*/ folders")
    p.add_argument("--model", type=Path, help="model folder (default: the model the app uses)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
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
    return "\n".join(lines)


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run(args) -> int:
    from fl.data import discover
    from fl.model import get_architecture
    from fl.modelfile import ModelFileError, load_model
    from fl.train import evaluate_samples

    samples = discover(args.data)
    if not samples:
        return fail(f"no images found in {args.data}")
    try:
        model, card = load_model(args.model or active_model_dir())
    except ModelFileError as exc:
        return fail(f"cannot use the model: {exc}")
    m = evaluate_samples(model, samples, input_size=card.input_size, scaling=get_architecture(card.arch).scaling)
    m["model"] = {"name": card.name, "version": card.version, "demo": card.demo}
    if args.json:
        print(json.dumps(m))
    else:
        print(f"Model: {card.display_name}")
        print(format_report(m, list(card.classes)))
    return 0
