"""Benchmarks of the learning core: latency, batch throughput, `fedxray classify` start, training overhead, memory.

Run: .venv/bin/python tests/benchmarks/bench_core.py [--model DIR] [--data DIR] [--repeats N] [--json OUT]
Not a test: it prints figures (and optionally writes them as JSON). Warm figures exclude the first call; the
LiteRT path (the model's artefact, no TensorFlow) and the TensorFlow path are timed interleaved in one run.
Targets (issue 16): LiteRT classify + heatmap <= 0.8 x the bare TensorFlow forward pass; batch with overlays
written >= 1.0 x the bare TensorFlow forward pass; `fedxray classify` of one image, start to JSON <= 1.0 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (graph tracing)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def ms(xs: list[float]) -> dict:
    return {"median_ms": round(1000 * statistics.median(xs), 1), "p90_ms": round(1000 * np.percentile(xs, 90), 1)}


def interleaved(variants: dict, repeats: int) -> dict[str, list[float]]:
    """Time each variant `repeats` times, in turn (after one warm-up call each)."""
    for fn in variants.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def bench_latency(model_dir: Path, image: Path, repeats: int) -> dict:
    """LiteRT classify + CAM vs TensorFlow's bare compiled forward pass and its GradCAM, interleaved; and
    model.predict + tf-keras-vis GradCAM (the common stack) for reference."""
    import tensorflow as tf
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from fl.inference import Classifier
    from fl.preprocess import preprocess, read_image

    lite = Classifier(model_dir, engine="litert")
    clf = Classifier(model_dir, engine="tensorflow")
    rg = read_image(image)
    x, _ = preprocess(rg, input_size=clf.card.input_size, scaling=clf.arch.scaling)
    batch = x[None]
    times = interleaved({
        "litert_classify_heatmap": lambda: lite.explainer(batch),
        "tensorflow_bare_forward": lambda: clf.explainer.predict(batch),
        "tensorflow_classify_gradcam": lambda: clf.explainer(batch),
        "litert_classify_from_radiograph": lambda: lite.classify(rg),
        "tensorflow_classify_from_radiograph": lambda: clf.classify(rg),
        "litert_classify_from_file": lambda: lite.classify(image),
    }, repeats)
    ours, bare = times["litert_classify_heatmap"], times["tensorflow_bare_forward"]

    gradcam = Gradcam(clf.model, model_modifier=ReplaceToLinear(), clone=True)

    def reference():
        probs = clf.model.predict(batch, verbose=0)
        return gradcam(CategoricalScore([int(np.argmax(probs[0]))]), batch, penultimate_layer=clf.arch.gradcam_layer,
                       seek_penultimate_conv_layer=False, expand_cam=expand)

    expand = True  # the common stack: tf-keras-vis upsamples the map to the input size itself
    ref = timed(reference, max(3, repeats // 4))
    _, cams, _ = clf.explainer(batch)
    # Same map? Compare on the feature grid both compute (upsampling conventions differ between libraries) ...
    expand = False
    grid = np.asarray(reference())[0]
    corr_grid = float(np.corrcoef(cams[0].ravel(), grid.ravel())[0, 1])
    _, lite_cams, _ = lite.explainer(batch)
    corr_lite = float(np.corrcoef(cams[0].ravel(), lite_cams[0].ravel())[0, 1])
    # ... and at input size, tf-keras-vis's own upsampling against ours (bilinear, half-pixel centres).
    expand = True
    theirs = np.asarray(reference())[0]
    mine = tf.image.resize(cams[0][..., None], theirs.shape, method="bilinear").numpy()[..., 0]
    corr = float(np.corrcoef(mine.ravel(), theirs.ravel())[0, 1])
    from scipy.ndimage import zoom  # tf-keras-vis's own upsampling (corner-aligned), applied to our map

    same_zoom = zoom(cams[0], (theirs.shape[0] / cams.shape[1], theirs.shape[1] / cams.shape[2]), order=1)
    corr_zoom = float(np.corrcoef(same_zoom.ravel(), theirs.ravel())[0, 1])
    return {
        "threads_litert": lite.threads,
        **{k: ms(v) for k, v in times.items()},
        "predict_plus_tf_keras_vis": ms(ref),
        "litert_classify_heatmap_vs_tensorflow_bare_forward": round(statistics.median(ours) / statistics.median(bare), 3),
        "tensorflow_gradcam_vs_bare_forward": round(statistics.median(times["tensorflow_classify_gradcam"])
                                                    / statistics.median(bare), 3),
        "from_radiograph_litert_vs_tensorflow": round(statistics.median(times["litert_classify_from_radiograph"])
                                                      / statistics.median(times["tensorflow_classify_from_radiograph"]), 3),
        "speedup_vs_tf_keras_vis": round(statistics.median(ref) / statistics.median(ours), 1),
        "cam_correlation_litert_vs_tensorflow_gradcam_grid": round(corr_lite, 7),
        "heatmap_correlation_with_tf_keras_vis_feature_grid": round(corr_grid, 4),
        "heatmap_correlation_with_tf_keras_vis_same_upsampling": round(corr_zoom, 4),
        "heatmap_correlation_with_tf_keras_vis_each_own_upsampling": round(corr, 4),
    }


def bench_batch(model_dir: Path, folder: Path, batch_size: int, limit: int, rounds: int = 3) -> dict:
    """The one path of `fedxray classify` and the batch window (app.core.batch.classify_files) on a folder with
    overlays written, on LiteRT and on TensorFlow, against TensorFlow's bare batched forward pass (interleaved)."""
    from app.core.batch import classify_files, expand
    from app.core.inference import InferenceService
    from fl.preprocess import preprocess, read_image

    files = expand([folder])[:limit]
    services = {}
    for engine in ("litert", "tensorflow"):
        services[engine] = InferenceService(engine=engine)
        services[engine].load(model_dir)
    clf = services["tensorflow"]._get()
    xs = np.stack([preprocess(read_image(f), input_size=clf.card.input_size, scaling=clf.arch.scaling)[0]
                   for f in files[:batch_size]])
    rates: dict[str, list[float]] = {"bare_tensorflow_forward": [], "litert": [], "tensorflow": []}
    for svc in services.values():
        list(svc.classify_many(files[:batch_size], batch_size=batch_size, heatmaps=True))  # warm
    clf.explainer.predict(xs)
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(max(1, len(files) // batch_size)):
            clf.explainer.predict(xs)
        rates["bare_tensorflow_forward"].append(batch_size * max(1, len(files) // batch_size)
                                                / (time.perf_counter() - t))
        for engine, svc in services.items():
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                n = sum(1 for r in classify_files(files, svc, heatmap_dir=out, batch_size=batch_size) if not r.error)
                rates[engine].append(n / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"images": len(files), "batch_size": batch_size, "rounds": rounds,
            **{f"{k}_images_per_s": round(v, 2) for k, v in med.items()},
            "litert_with_overlays_vs_bare_tensorflow": round(med["litert"] / med["bare_tensorflow_forward"], 3),
            "tensorflow_with_overlays_vs_bare_tensorflow": round(med["tensorflow"] / med["bare_tensorflow_forward"], 3)}


def bench_cli_start(model_dir: Path, image: Path, runs: int) -> dict:
    """`fedxray classify IMAGE --json`, process start to the JSON line, LiteRT and TensorFlow interleaved."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    out: dict[str, list[float]] = {"litert": [], "tensorflow": []}
    for _ in range(runs):
        for engine in out:
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "app", "classify", str(image), "--json", "--model",
                                     str(model_dir), "--engine", engine], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
            line = proc.stdout.readline()
            out[engine].append(time.perf_counter() - t)
            proc.wait()
            assert json.loads(line)["predicted"], line
    return {**{f"{k}_start_to_json_s": [round(x, 3) for x in v] for k, v in out.items()},
            **{f"{k}_median_s": round(statistics.median(v), 3) for k, v in out.items()}}


def bench_training(data: Path, arch: str, input_size: int, batch_size: int, steps: int, rounds: int = 3) -> dict:
    """Training step time with the cached, augmented tf.data pipeline vs the bare train step on one batch held in
    memory. Every variant is warmed up first, then the variants are run interleaved `rounds` times."""
    import tensorflow as tf

    from fl.data import discover, make_dataset
    from fl.model import build_model, get_architecture
    from fl.train import compile_model

    samples = discover(data)[::10][: batch_size * steps]  # every class, as in training
    scaling = get_architecture(arch).scaling
    model = compile_model(build_model(arch, input_size=input_size), 1e-4)
    variants = {}
    for augment in (False, True):
        ds = make_dataset(samples, input_size=input_size, scaling=scaling, batch_size=batch_size, training=True,
                          augment=augment)
        list(ds)  # fill the cache, as after the first epoch
        variants[f"pipeline_augment_{str(augment).lower()}"] = ds
    x, y = next(iter(variants["pipeline_augment_false"]))
    variants["bare"] = tf.data.Dataset.from_tensors((x, y)).repeat(steps)
    # The pipeline's length is unknown to Keras (it filters unreadable files); so is this bare variant's.
    variants["bare_unknown_length"] = variants["bare"].filter(lambda a, b: True)
    for ds in variants.values():
        model.fit(ds, epochs=1, verbose=0)  # build the training graphs
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, ds in variants.items():
            t = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - t) / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    bare = min(med["bare"], med["bare_unknown_length"])
    return {"arch": arch, "input_size": input_size, "batch_size": batch_size, "steps": steps, "rounds": rounds,
            **{f"{k}_step_s": round(v, 4) for k, v in med.items()},
            "pipeline_overhead_pct": round(100 * (med["pipeline_augment_true"] / bare - 1), 1)}


def bench_memory(model_dir: Path, image: Path) -> dict:
    """Peak resident memory of a fresh process that loads the model and classifies with a heatmap, per engine."""
    out = {}
    for engine in ("litert", "tensorflow"):
        code = (
            "import os,resource;os.environ['TF_CPP_MIN_LOG_LEVEL']='2'\n"
            "from fl.inference import Classifier\n"
            f"c=Classifier({str(model_dir)!r}, engine={engine!r})\n"
            f"[c.classify({str(image)!r}) for _ in range(5)]\n"
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
        out[f"{engine}_peak_rss_mb"] = round(int(run.stdout.split()[-1]) / 1024, 1)
    return out


def main() -> None:
    import resources

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batch-images", type=int, default=96)
    ap.add_argument("--train-arch", default="se_resnet50v2")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--cli-runs", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=["latency", "batch", "cli", "training", "memory"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model_dir = args.model or resources.default_model_dir()
    image = sorted((args.data / "Normal").glob("*.png"))[0]
    results: dict = {"model": str(model_dir), "cpus": os.cpu_count()}
    if "latency" in args.only:
        results["latency"] = bench_latency(model_dir, image, args.repeats)
        print(json.dumps({"latency": results["latency"]}, indent=1), flush=True)
    if "batch" in args.only:
        results["batch"] = bench_batch(model_dir, args.data / "Pneumonia-Viral", args.batch_size, args.batch_images)
        print(json.dumps({"batch": results["batch"]}, indent=1), flush=True)
    if "cli" in args.only:
        results["cli"] = bench_cli_start(model_dir, image, args.cli_runs)
        print(json.dumps({"cli": results["cli"]}, indent=1), flush=True)
    if "training" in args.only:
        results["training"] = bench_training(args.data, args.train_arch, 224, args.batch_size, args.train_steps)
        print(json.dumps({"training": results["training"]}, indent=1), flush=True)
    if "memory" in args.only:
        results["memory"] = bench_memory(model_dir, image)
        print(json.dumps({"memory": results["memory"]}, indent=1), flush=True)
    results["this_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
