"""Model-randomisation sanity check (Adebayo et al. 2018) of the bundled model's heatmaps, on validation images.

A faithful explanation must depend on what the network learned. The heatmaps of the trained SE-ResNet50V2 (the
TensorFlow reference path, identical to the app's LiteRT maps: tests/fl/test_litert.py) are compared with those of
(1) the same network with only its class layer ("logits") re-initialised (the top of a cascading randomisation) and
(2) the whole network re-initialised. Similarity: Spearman rank correlation of the 7x7 maps and of the maps over
the original image. No training: only forward and backward passes.

    .venv/bin/python tests/benchmarks/gradcam_sanity.py [--images N] [--out FILE]

About a minute on 2 cores for 24 images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "default")
    parser.add_argument("--images", type=int, default=24, help="validation images used (every k-th)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import keras

    from fl.data import discover, split_by_patient
    from fl.gradcam import Explainer
    from fl.model import build_model, get_architecture
    from fl.modelfile import load_model
    from fl.preprocess import preprocess, read_image
    from tests.conftest import shared_data_dir

    model, card = load_model(args.model)
    arch = get_architecture(card.arch)
    cfg = card.training.get("config", {})
    _, val = split_by_patient(discover(shared_data_dir() / "cxr"), val_fraction=float(cfg.get("val_fraction", 0.2)),
                              seed=int(cfg.get("seed", 0)))
    chosen = val[:: max(1, len(val) // args.images)][: args.images]
    batch = np.stack([preprocess(read_image(s.path), input_size=card.input_size, scaling=arch.scaling)[0]
                      for s in chosen])

    trained = Explainer(model, arch)
    probs, maps, predicted = trained(batch)

    top_random = keras.models.clone_model(model)
    top_random.set_weights(model.get_weights())
    logits = top_random.get_layer("logits")
    rng = np.random.default_rng(0)
    logits.set_weights([rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in logits.get_weights()])
    keras.utils.set_random_seed(0)
    full_random = build_model(card.arch, input_size=int(card.input_size), num_classes=len(card.classes))

    out = {"method": "Adebayo et al. 2018 model-parameter randomisation; Spearman rank correlation of GradCAM "
                     "maps of the predicted class, trained vs randomised network",
           "measured_with": "tests/benchmarks/gradcam_sanity.py", "images": len(chosen)}
    for name, net in (("logits_layer_randomised", top_random), ("all_layers_randomised", full_random)):
        _, rmaps, _ = Explainer(net, arch)(batch, class_index=[int(i) for i in predicted])
        rho = np.array([spearman(a, b) for a, b in zip(maps, rmaps, strict=True)])
        out[name] = {"mean_spearman": round(float(np.nanmean(rho)), 3),
                     "max_spearman": round(float(np.nanmax(rho)), 3),
                     "share_below_0_5": round(float(np.mean(np.nan_to_num(rho, nan=0.0) < 0.5)), 3)}
    out["passes"] = all(out[k]["mean_spearman"] < 0.5 for k in ("logits_layer_randomised", "all_layers_randomised"))
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
