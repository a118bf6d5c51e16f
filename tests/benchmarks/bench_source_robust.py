"""Compare training settings against the source shortcut with the tiny network: baseline (class weights),
(source x class) loss weights, source-cue augmentations, and both.

Each setting is trained with `fl.train.train` (what `fedxray train` runs: patient-level split by the seed, best
epoch by validation macro-F1) on the shared data set, for every seed; the seed sets the split, the
initialisation and the augmentations. The figures are the best epoch's, on that seed's validation patients:
accuracy, macro-F1, adult non-COVID specificity and paediatric 3-class accuracy (fl.cohorts). It also times
the source-cue augmentations per batch. Prints one JSON object (mean and sample standard deviation over seeds).

    nice -n 10 .venv/bin/python tests/benchmarks/bench_source_robust.py [--seeds 0 1 2 3 4] [--epochs 24] [--out F]

The machine is shared: about 90 s per setting and seed with the defaults (tiny network, 64 px), 30 min in all.
README.md ("The bundled demonstration model") has the figures of the defaults: seeds 0-2 chose, 3-4 confirmed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SETTINGS = {
    "baseline": {"source_weights": False, "source_cues": False},
    "source_weights": {"source_weights": True, "source_cues": False},
    "source_cues": {"source_weights": False, "source_cues": True},
    "both": {"source_weights": True, "source_cues": True},
}
FIGURES = ("accuracy", "macro_f1", "adult_non_covid_specificity", "paediatric_3class_accuracy")


def time_source_cues(root: Path, *, size: int, batch: int = 8, repeats: int = 20) -> float:
    """Median seconds of fl.augment.source_cue_batch on a batch of `batch` real images at `size` px."""
    from fl.augment import source_cue_batch
    from fl.data import discover
    from fl.preprocess import letterbox, read_image

    samples = discover(root)[::40][:batch]
    x = np.stack([letterbox(read_image(s.path).pixels, size)[0] for s in samples])[..., None]
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        source_cue_batch(x, [i, 1])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_one(root: Path, setting: str, seed: int, args) -> dict:
    from fl.train import TrainConfig, train

    config = TrainConfig(arch="tiny", input_size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, seed=seed, **SETTINGS[setting])  # fmt: skip
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        card = train(root, out, config, name="bench", verbose=0)
    m = card.metrics["validation"]
    row = {k: m.get(k) for k in FIGURES}
    row.update(adult_non_covid_n=m.get("adult_non_covid_n"), paediatric_n=m.get("paediatric_n"),
               best_epoch=card.training["best_epoch"], seconds=round(time.perf_counter() - t0, 1))
    print(f"{setting} seed {seed}: " + ", ".join(f"{k} {v}" for k, v in row.items()), file=sys.stderr, flush=True)
    return row


def summarise(rows: list[dict]) -> dict:
    out = {}
    for k in FIGURES:
        values = [r[k] for r in rows if r[k] is not None]
        out[k] = {"mean": statistics.fmean(values) if values else None,
                  "sd": statistics.stdev(values) if len(values) > 1 else None,
                  "min": min(values, default=None), "max": max(values, default=None)}  # fmt: skip
    return out


def main() -> int:
    from tests.conftest import shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    import keras

    keras.utils.disable_interactive_logging()
    root = shared_data_dir() / "cxr"
    result: dict = {
        "network": "tiny", "input_size": args.size, "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "seeds": args.seeds,
        "source_cue_seconds_per_batch_of_8": {str(s): round(time_source_cues(root, size=s), 4) for s in (64, 224)},
        "settings": {},
    }  # fmt: skip
    for seed in args.seeds:  # seed by seed: an interrupted run still compares every setting on the seeds done
        for setting in args.settings:
            entry = result["settings"].setdefault(setting, {"per_seed": {}})
            entry["per_seed"][str(seed)] = run_one(root, setting, seed, args)
            entry["summary"] = summarise(list(entry["per_seed"].values()))
            if args.out:  # written after every run: a partial result survives an interruption
                args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
