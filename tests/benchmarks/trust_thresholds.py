"""Choose the explanation-warning threshold and the near-tie margin on the validation patients' images.

The validation images are the ones training held out (fl.data.split_by_patient with the bundled model's own
val_fraction and seed, from its card). Each is classified by the bundled model (LiteRT, class activation map of
the predicted class, as the app does) and the heatmap's share of attention at the border / outside the body
is measured (fl.attention). The rules that pick the two numbers are in `choose_threshold` and `choose_margin`;
the script prints them with the share of validation results each would flag, as JSON.

    .venv/bin/python tests/benchmarks/trust_thresholds.py [--model DIR] [--out FILE] [--per-image FILE]

About 0.3 s per image on 2 cores (135 validation images).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

THRESHOLDS = np.round(np.arange(0.30, 0.951, 0.05), 2)
MARGINS = np.round(np.arange(0.02, 0.401, 0.02), 2)


def measure(model_dir: Path) -> list[dict]:
    """One record per validation image: source, true and predicted class, top-two margin, attention shares."""
    from fl.attention import attention_shares
    from fl.classes import CLASSES
    from fl.data import discover, split_by_patient
    from fl.inference import Classifier
    from fl.modelfile import read_card
    from tests.conftest import shared_data_dir

    root = shared_data_dir() / "cxr"
    card = read_card(model_dir)
    cfg = card.training.get("config", {})
    _, val = split_by_patient(discover(root), val_fraction=float(cfg.get("val_fraction", 0.2)),
                              seed=int(cfg.get("seed", 0)))
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        population = {r["filename"]: r["population"] for r in csv.DictReader(f)}
    clf = Classifier(model_dir, engine="auto")
    out = []
    for s in val:
        pred = clf.classify(s.path)
        p = np.sort(pred.probabilities)[::-1]
        shares = attention_shares(pred.radiograph.pixels, pred.heatmap)
        flat = attention_shares(pred.radiograph.pixels, np.ones_like(pred.heatmap))  # the off-target area
        rel = s.path.relative_to(root).as_posix()
        out.append({"file": rel, "source": "paediatric" if "pediatric" in population.get(rel, "") else "case reports",
                    "label": CLASSES[s.label], "predicted": CLASSES[pred.predicted],
                    "correct": bool(pred.predicted == s.label), "margin": float(p[0] - p[1]), **shares.as_dict(),
                    "flat_off_target": flat.off_target})
    return out


def choose_threshold(records: list[dict]) -> dict:
    """The explanation threshold: the lowest candidate at which (1) the share off target means "mostly" (more than
    half of the attention, as the warning says) and (2) a flat, uninformative heatmap would be warned on at most
    5 % of the validation images (the border band and the background are large on some images; the warning must
    measure where the model looked, not how much background an image has)."""
    rows = []
    for t in THRESHOLDS:
        rows.append({"threshold": float(t), "warned_all": _share(records, lambda r, t=t: r["off_target"] > t),
                     "warned_flat_map": _share(records, lambda r, t=t: r["flat_off_target"] > t),
                     **{f"warned_{s.replace(' ', '_')}": _share([r for r in records if r["source"] == s],
                                                                lambda r, t=t: r["off_target"] > t)
                        for s in ("paediatric", "case reports")},
                     "warned_wrong_results": _share([r for r in records if not r["correct"]],
                                                    lambda r, t=t: r["off_target"] > t),
                     "warned_right_results": _share([r for r in records if r["correct"]],
                                                    lambda r, t=t: r["off_target"] > t)})
    chosen = next((r for r in rows if r["threshold"] >= 0.5 and r["warned_flat_map"] <= 0.05), rows[-1])
    return {"chosen": chosen, "curve": rows}


def choose_margin(records: list[dict]) -> dict:
    """The near-tie margin: the largest candidate at which the validation results whose top two probabilities lie
    closer than it are right no more often than a coin toss between the two (accuracy <= 50 %), while those at
    or above it are right at least as often as all results together. None qualify: the smallest candidate."""
    overall = float(np.mean([r["correct"] for r in records]))
    rows = []
    for m in MARGINS:
        below = [r["correct"] for r in records if r["margin"] < m]
        above = [r["correct"] for r in records if r["margin"] >= m]
        rows.append({"margin": float(m), "n_below": len(below),
                     "accuracy_below": float(np.mean(below)) if below else None,
                     "accuracy_at_or_above": float(np.mean(above)) if above else None})
    ok = [r for r in rows if r["n_below"] and r["accuracy_below"] <= 0.50
          and (r["accuracy_at_or_above"] or 0) >= overall]
    chosen = ok[-1] if ok else rows[0]
    return {"chosen": {**chosen, "share_flagged": chosen["n_below"] / len(records)}, "overall_accuracy": overall,
            "curve": rows}


def _share(records: list[dict], pred) -> float:
    return float(np.mean([bool(pred(r)) for r in records])) if records else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "default")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    parser.add_argument("--per-image", type=Path, help="write the per-image records (JSON) here")
    args = parser.parse_args()
    records = measure(args.model)
    if args.per_image:
        args.per_image.write_text(json.dumps(records, indent=1))
    summary = {"images": len(records), "patients_split": "fl.data.split_by_patient (card's val_fraction, seed)",
               "by_source": {s: sum(r["source"] == s for r in records) for s in ("paediatric", "case reports")},
               "off_target_quantiles": {q: round(float(np.quantile([r["off_target"] for r in records], q)), 3)
                                        for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
               "explanation": choose_threshold(records), "near_tie": choose_margin(records)}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
