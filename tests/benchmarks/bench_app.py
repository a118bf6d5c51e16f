"""Desktop app benchmarks: launch, first result, warm drop-to-overlay, GUI pauses, memory.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_app.py [--model DIR] [--runs 3]

Uses the bundled default model unless --model is given (then it is imported into a private workstation).
Every measurement runs the real app code; nothing is mocked. Figures are printed and written as JSON. Each
engine is measured: "litert" (the model's LiteRT artefact, what the app uses when the model has one) and
"tensorflow" (the fallback); launches alternate between them, and each warm session runs in its own process.
Targets (issues 3 and 16): usable window <= 1.5 s, first result <= 1.5 s (LiteRT), warm drop-to-overlay <= 1.3x
bare classify + heatmap, largest event-loop pause < 100 ms, RSS with the model loaded while classifying <= 500 MB
(LiteRT).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FEDXRAY_SHARED_DATA", REPO.parent / "shared" / "data"))

ENGINE_PATCH = textwrap.dedent("""
    import app.core.inference as _inference
    _init = _inference.InferenceService.__init__
    def _with_engine(self, **kw):
        _init(self, **{**kw, "engine": ENGINE})
    _inference.InferenceService.__init__ = _with_engine
""")

CHILD = textwrap.dedent("""
    import json, sys, time
    import app.ui.main_window as mw
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    marks = {}
    show = mw.MainWindow.show
    def timed_show(self):
        show(self)
        # "usable": shown and the event loop has processed the first paint
        QTimer.singleShot(0, lambda: marks.setdefault("usable", time.time()))
        self.document.stateChanged.connect(lambda s: s == "result" and marks.setdefault("result", time.time()))
        self.model.changed.connect(lambda: self.model.state == "ready" and marks.setdefault("ready", time.time()))
    mw.MainWindow.show = timed_show

    def poll():
        if "result" in marks:
            for w in QApplication.topLevelWidgets():
                w.close()
            QApplication.quit()
    from app.ui.launch import make_app
    make_app(sys.argv[:1])  # the QApplication run() will reuse; timers need it
    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(20)
    from app.cli import main
    main(sys.argv[1:])
    print("MARKS " + json.dumps(marks), flush=True)
""")


def private_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="fedxray-bench-"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(home / var.lower())
    return home


def install(model: Path | None) -> None:
    if model is None:
        return
    from app.core.models import ModelStore
    from app.core.settings import Preferences

    m = ModelStore().import_model(model)
    prefs = Preferences.load()
    prefs.model_id = m.id
    prefs.save()


def bench_launch(image: Path, runs: int, engines: list[str]) -> dict:
    """Process start -> usable window, -> model ready, -> first result (separate cold processes, the engines
    alternating)."""
    out: dict[str, list[float]] = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    for _ in range(runs):
        for engine in engines:
            code = f"ENGINE = {engine!r}\n" + ENGINE_PATCH + CHILD
            t0 = time.time()
            run = subprocess.run([sys.executable, "-c", code, str(image)], capture_output=True, text=True,
                                 env=env, timeout=300, check=False)
            line = next((x for x in run.stdout.splitlines() if x.startswith("MARKS ")), None)
            if line is None:
                raise RuntimeError(run.stderr[-3000:])
            marks = json.loads(line[6:])
            for mark, key in (("usable", "usable_window"), ("ready", "model_ready"), ("result", "first_result")):
                out.setdefault(f"{engine}_launch_to_{key}_s", []).append(marks[mark] - t0)
    return out


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def bench_warm(images: list[Path], batch_dir: Path, runs: int, engine: str = "auto") -> dict:
    from PySide6.QtCore import QEvent, QEventLoop, QMimeData, QObject, QPointF, Qt, QTimer, QUrl
    from PySide6.QtGui import QDropEvent

    from app.core.inference import InferenceService
    from app.ui.launch import make_app
    from app.ui.main_window import MainWindow

    make_app(["bench"])
    w = MainWindow(service=InferenceService(engine=engine))
    w.resize(1440, 900)
    w.show()

    def spin(cond, timeout=300.0, poll_ms=20):
        """Run the real event loop (as in the app) until cond() holds; cond is checked every poll_ms."""
        if cond():
            return
        loop = QEventLoop()
        t = time.perf_counter()
        check = QTimer()
        check.setInterval(poll_ms)

        def test():
            if cond() or time.perf_counter() - t > timeout:
                loop.quit()

        check.timeout.connect(test)
        check.start()
        loop.exec()
        check.stop()
        if not cond():
            raise TimeoutError

    spin(lambda: w.model.state in ("ready", "failed"))
    assert w.model.state == "ready", w.model.error
    out: dict = {"model": f"{w.model.card.name} {w.model.card.version} ({w.model.card.arch}, "
                          f"{w.model.card.input_size} px)", "engine": w.service.engine,
                 "tensorflow_imported": "tensorflow" in sys.modules}

    class PaintWatch(QObject):
        """Notes the first paint of the viewer after the result and its overlay are in the document."""

        painted_at = None
        loop: QEventLoop | None = None

        def eventFilter(self, obj, event):
            if (event.type() == QEvent.Type.Paint and self.painted_at is None and w.document.state == "result"
                    and w.document.heat_image is not None):
                self.painted_at = time.perf_counter()
                if self.loop is not None:
                    QTimer.singleShot(0, self.loop.quit)  # after this paint has finished
            return False

    watch = PaintWatch()
    w.case_page.view.viewer.viewport().installEventFilter(watch)

    def drop(path: Path) -> float:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        ev = QDropEvent(QPointF(400, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                        Qt.KeyboardModifier.NoModifier)
        spin(lambda: w.runner.active == 0)  # the previous case is fully stored
        watch.painted_at = None
        watch.loop = QEventLoop()
        t = time.perf_counter()
        w.dropEvent(ev)
        if watch.painted_at is None:
            watch.loop.exec()  # the app's event loop, woken only by events; quits at the first overlay paint
        watch.loop = None
        return watch.painted_at - t

    drop(images[0])  # warm-up (first tf.function call paths, Qt caches)
    drops, bare = [], []
    for i in range(runs):
        img = images[i % len(images)]
        drops.append(drop(img))
        t = time.perf_counter()
        w.service.classify(img)  # the bare read + classify + GradCAM of the same image
        bare.append(time.perf_counter() - t)
    out["warm_drop_to_overlay_painted_s"] = drops
    out["bare_classify_gradcam_s"] = bare
    out["drop_vs_bare_ratio"] = statistics.median(drops) / statistics.median(bare)

    # Event-loop pauses: a 10 ms timer while a classification and a batch run together.
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    rss_samples = []
    sampler = QTimer()
    sampler.setInterval(100)
    sampler.timeout.connect(lambda: rss_samples.append(rss_mb()[0]))
    # Control: the same timer with the app idle, to show how much of a pause is this shared machine.
    timer.start()
    idle_until = time.perf_counter() + 3.0
    spin(lambda: time.perf_counter() > idle_until, poll_ms=50)
    idle_gaps, gaps[:] = gaps[1:], []
    last[0] = time.perf_counter()
    sampler.start()
    dialog = w.show_batch()  # builds the batch graph while the user would be choosing a folder
    dialog.record.setChecked(True)
    spin(lambda: w.runner.active == 0)
    warm_gaps, gaps[:] = gaps[1:], []
    last[0] = time.perf_counter()
    dialog.start(batch_dir)
    w.open_image(images[1])
    t = time.perf_counter()
    spin(lambda: not dialog.running and w.document.state == "result" and w.runner.active == 0, 900)
    busy_s = time.perf_counter() - t
    timer.stop()
    sampler.stop()
    gaps = gaps[1:]
    out["event_loop_during_classify_and_batch"] = {
        "busy_s": busy_s, "batch_images": len(dialog.rows), "ticks": len(gaps),
        "max_gap_ms": 1000 * max(gaps), "p99_gap_ms": 1000 * sorted(gaps)[int(0.99 * (len(gaps) - 1))],
        "median_gap_ms": 1000 * statistics.median(gaps),
        "max_gap_ms_while_batch_window_opens": 1000 * max(warm_gaps, default=0.0),
        "control_max_gap_ms_app_idle_3s": 1000 * max(idle_gaps, default=0.0)}
    cur, peak = rss_mb()
    out["rss_mb"] = {"while_classifying_max_sampled": max(rss_samples) if rss_samples else cur, "peak_vmhwm": peak,
                     "after": cur}
    dialog.close()
    w.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=24, help="images in the batch run")
    ap.add_argument("--engines", nargs="+", default=["litert", "tensorflow"], choices=["litert", "tensorflow"])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--skip-launch", action="store_true", help="only the in-process (warm) measurements")
    ap.add_argument("--warm-only", choices=["litert", "tensorflow"], help=argparse.SUPPRESS)  # one warm session
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    home = private_home()
    install(args.model)
    images = [sorted((SHARED / "cxr" / c).glob("*.png"))[3] for c in ("Covid", "Normal", "Pneumonia-Viral")]
    images.append(SHARED / "dicom" / "RG1_UNCR.dcm")
    batch_dir = home / "batch"
    batch_dir.mkdir()
    for p in sorted((SHARED / "cxr" / "Pneumonia-Bacterial").glob("*.png"))[: args.batch]:
        shutil.copy2(p, batch_dir / p.name)
    if args.warm_only:
        figures = bench_warm(images, batch_dir, max(args.runs, 3), args.warm_only)
        print("WARM " + json.dumps(figures))
        shutil.rmtree(home, ignore_errors=True)
        return 0

    figures: dict = {"machine": f"{os.cpu_count()} CPUs"}
    if not args.skip_launch:
        figures.update(bench_launch(images[0], args.runs, args.engines))
    for engine in args.engines:  # each warm session in a fresh process: memory of that engine alone
        cmd = [sys.executable, __file__, "--warm-only", engine, "--runs", str(args.runs), "--batch", str(args.batch)]
        if args.model:
            cmd += ["--model", str(args.model)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
        line = next((x for x in run.stdout.splitlines() if x.startswith("WARM ")), None)
        if line is None:
            raise RuntimeError(run.stderr[-3000:])
        figures[f"warm_{engine}"] = json.loads(line[5:])
    figures["medians"] = {k: statistics.median(v) for k, v in figures.items() if isinstance(v, list)}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
