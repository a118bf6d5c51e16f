"""`fedxray train`: centralised training on a class-folder dataset, with a patient-level validation split."""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli.common import fail


def register(sub) -> None:
    import argparse

    from fl.model import ARCHITECTURES
    from fl.train import TrainConfig

    p = sub.add_parser("train", help="train a model on a folder of class folders")
    p.add_argument("--data", type=Path, required=True, help="folder with Covid/, Normal/, Pneumonia-*/ folders")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="se_resnet50v2")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, help="'imagenet', a Keras backbone weights file, or none")
    p.add_argument("--name", default=None, help="model name for the card")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--demo", action="store_true", help="label the model as a demonstration model")
    p.add_argument("--no-augment", action="store_true", help="no rotation, zoom, shift, brightness or contrast")
    p.add_argument("--source-weights", action=argparse.BooleanOptionalAction, default=TrainConfig.source_weights,
                   help="weight the loss by (source, class) cell of the manifest instead of by class, so that "
                        "small cells such as the adult non-COVID images count (default: %(default)s)")
    p.add_argument("--source-cues", action=argparse.BooleanOptionalAction, default=TrainConfig.source_cues,
                   help="training augmentations that make source cues useless: burnt-in text and markers, "
                        "borders, crops, resolution, blur, JPEG, contrast and gamma curves (default: %(default)s)")
    p.add_argument("--no-litert", action="store_true",
                   help="do not make the LiteRT artefact of the best model (it lets the app start without TensorFlow)")
    p.set_defaults(func=run)


def run(args) -> int:
    from fl.model import WeightsError
    from fl.train import TrainConfig, train

    config = TrainConfig(
        arch=args.arch, input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, val_fraction=args.val_fraction, seed=args.seed,
        weights=args.weights, augment=not args.no_augment, source_weights=args.source_weights,
        source_cues=args.source_cues,
    )
    name = args.name or {"se_resnet50v2": "FedXray SE-ResNet50V2", "densenet121": "FedXray DenseNet121"}.get(
        args.arch, f"FedXray {args.arch}")

    def report(epoch: int, row: dict) -> None:
        print(f"epoch {epoch}/{args.epochs}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
              f"val accuracy {row['val_accuracy']:.3f}  val macro-F1 {row['val_macro_f1']:.3f}"
              f"{_cohort_text(row['val_adult_non_covid_specificity'], row['val_paediatric_3class_accuracy'])}  "
              f"({row['seconds']:.0f} s)", flush=True)

    try:
        card = train(args.data, args.out, config, name=name, version=args.version, demo=args.demo, on_epoch=report)
    except (WeightsError, ValueError) as exc:
        return fail(str(exc))
    m = card.metrics["validation"]
    print(f"Saved {card.display_name} to {args.out} (best epoch {card.training['best_epoch']}: "
          f"val accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f})")
    if "adult_non_covid_n" in m:
        from fl.cohorts import format_cohorts

        print(format_cohorts(m))
    if not args.no_litert:
        from fl.litert_convert import ConversionError, convert

        try:
            path = convert(args.out)
        except ConversionError as exc:  # the model itself is saved and usable (with TensorFlow)
            print(f"fedxray: no LiteRT artefact for this model: {exc}", file=sys.stderr)
        else:
            print(f"Saved its LiteRT artefact {path} (checked against the model; SHA-256 in card.json)")
    return 0


def _cohort_text(adult, paediatric) -> str:
    """The cohort figures of one epoch (fl.cohorts), left out when the validation set has neither cohort."""
    parts = [f"adult non-COVID spec {adult:.3f}" if adult is not None else "",
             f"paediatric 3-class acc {paediatric:.3f}" if paediatric is not None else ""]  # fmt: skip
    return "".join(f"  {p}" for p in parts if p)
