"""How exactly the bundled model's LiteRT artefact reproduces the TensorFlow path, on every real image.

Three engines classify and explain each image: TensorFlow (the reference: Keras model, GradCAM of the logit), the
shipped artefact (float16 storage where lossless) and a float32 artefact made here from the same weights. Printed
as JSON: the largest probability difference to TensorFlow, argmax agreement, the smallest heatmap correlation over
the original image, and whether the shipped artefact's outputs are bit-identical to the float32 artefact's.

    .venv/bin/python tests/benchmarks/litert_agreement.py [--every N] [--model DIR] [--out FILE]

About 0.5 s per image on 2 cores (all 673 PNG/JPEG images of ../shared/data/cxr plus its DICOM files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    from tests.conftest import shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "default")
    parser.add_argument("--every", type=int, default=1, help="use every N-th image (default: all)")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()

    from fl.imageio import find_images
    from fl.inference import Classifier
    from fl.litert_convert import convert
    from fl.modelfile import CARD_FILE, INFERENCE_FILE, read_card
    from fl.preprocess import read_image

    data = shared_data_dir()
    files = find_images(data / "cxr")[:: args.every] + find_images(data / "dicom")
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "model"  # the same model without its artefact, to pair it with a float32 one
        bare.mkdir()
        card = read_card(args.model)
        shutil.copy2(args.model / Path(card.weights["file"]).name, bare)
        (bare / CARD_FILE).write_text(dataclasses.replace(card, inference={}).to_json())
        started = time.perf_counter()
        convert(bare, into=Path(tmp) / "f32", exact_float16=False)
        seconds = time.perf_counter() - started
        engines = {
            "tensorflow": Classifier(args.model, engine="tensorflow"),
            "litert_shipped": Classifier(args.model, engine="litert"),
            "litert_float32": Classifier(bare, engine="litert", artefact_dir=Path(tmp) / "f32"),
        }
        sizes = {"litert_shipped": (args.model / INFERENCE_FILE).stat().st_size,
                 "litert_float32": (Path(tmp) / "f32" / INFERENCE_FILE).stat().st_size}
        rows = []
        for i, path in enumerate(files):
            try:
                image = read_image(path)
            except Exception as exc:  # noqa: BLE001 - a file the readers refuse is not part of the comparison
                rows.append({"file": str(path), "error": str(exc)})
                continue
            out = {name: c.classify(image) for name, c in engines.items()}
            ref = out["tensorflow"]
            row = {"file": str(path.relative_to(data)), "dicom": image.format == "DICOM"}
            for name in ("litert_shipped", "litert_float32"):
                p = out[name]
                row[name] = {
                    "max_probability_difference": float(np.abs(p.probabilities - ref.probabilities).max()),
                    "same_argmax": int(p.predicted) == int(ref.predicted),
                    "heatmap_correlation": _corr(p.heatmap, ref.heatmap),
                    "heatmap_max_difference": float(np.abs(p.heatmap - ref.heatmap).max()),
                }
            row["shipped_equals_float32"] = bool(
                np.array_equal(out["litert_shipped"].probabilities, out["litert_float32"].probabilities)
                and np.array_equal(out["litert_shipped"].heatmap, out["litert_float32"].heatmap))
            rows.append(row)
            if (i + 1) % 50 == 0:
                print(f"{i + 1}/{len(files)}", file=sys.stderr, flush=True)
    ok = [r for r in rows if "error" not in r]
    summary = {
        "model": card.display_name, "images": len(ok), "dicom": sum(r["dicom"] for r in ok),
        "refused_by_the_readers": [r["file"] for r in rows if "error" in r],
        "float32_conversion_seconds": round(seconds, 1), "artefact_bytes": sizes,
        "shipped_bit_identical_to_float32": sum(r["shipped_equals_float32"] for r in ok),
    }
    for name in ("litert_shipped", "litert_float32"):
        summary[name] = {
            "max_probability_difference": max(r[name]["max_probability_difference"] for r in ok),
            "same_argmax": sum(r[name]["same_argmax"] for r in ok),
            "min_heatmap_correlation": min(r[name]["heatmap_correlation"] for r in ok),
            "max_heatmap_difference": max(r[name]["heatmap_max_difference"] for r in ok),
        }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


if __name__ == "__main__":
    sys.exit(main())
