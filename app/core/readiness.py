"""Is this workstation ready to take part? A list of checks, each ok / warn / fail with a plain detail.

Public API (plain data; every check may block: the app runs them on a worker thread):
- `run_checks(*, data_dir=None, device=True, central=True) -> list[Check]`: all of them, in display order.
- The single checks: `check_labelled_set(path)`, `check_device(train_images)`, `check_disk(path)`,
  `check_central()` (returns the clock and reachability checks, from one probe of the enrolled central).
- `training_data_dir(settings=None) -> Path`: the folder the agent trains on (settings, else the labelled set).
The device check asks TensorFlow in a child process (3-7 s; TensorFlow is never imported into the caller).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import AppError

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_DISK = 2 * 1024**3  # bytes: a model folder, the per-run state and logs, with room to spare
# CPU cost model for the estimate of a round, measured on a 2-core machine (../shared/notes/platform.md: the full
# network, batch 8: first step about 25 s to build the graph, then about 1.5 s per step; forward about 0.1 s/image).
CPU_FIRST_STEP_S = 25.0
CPU_SECONDS_PER_TRAIN_IMAGE = 1.5 / 8
CPU_SECONDS_PER_EVAL_IMAGE = 0.1
DEVICE_PROBE = (
    "import json, os\n"
    "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')\n"
    "import tensorflow as tf\n"
    "out = []\n"
    "for g in tf.config.list_physical_devices('GPU'):\n"
    "    d = tf.config.experimental.get_device_details(g)\n"
    "    out.append({'name': d.get('device_name') or g.name, 'compute': d.get('compute_capability')})\n"
    "print(json.dumps(out))\n"
)


@dataclass(frozen=True)
class Check:
    """One line of the readiness list."""

    name: str  # "Labelled images", "Training device", "Free disk", "Clock", "Central"
    level: str  # ok | warn | fail
    detail: str  # plain words; for warn/fail also what to do

    @property
    def ok(self) -> bool:
        return self.level != FAIL


def training_data_dir(settings=None) -> Path:
    """The folder the agent trains on: the federation settings' data_dir, else the local labelled set."""
    from app.core import federation_settings
    from app.core.labelled import LabelledSet

    settings = settings or federation_settings.load()
    if settings.data_dir:
        return Path(settings.data_dir).expanduser()
    return LabelledSet().root


def check_labelled_set(path: Path) -> tuple[Check, int]:
    """Images and patients per class, and whether a patient-wise validation split exists; (check, training
    images the split leaves, 0 when it fails)."""
    from fl.classes import CLASSES
    from fl.data import DatasetError, discover, split_by_patient

    name = "Labelled images"
    if not Path(path).is_dir():
        return Check(name, FAIL, f"No labelled images yet ({path}): confirm or correct cases in the app to build "
                     "the local labelled set."), 0  # fmt: skip
    try:
        samples = discover(Path(path))
    except DatasetError as exc:
        return Check(name, FAIL, f"The labelled set cannot be used: {exc}."), 0
    images = Counter(CLASSES[s.label] for s in samples)
    patients = {c: len({s.patient_id for s in samples if CLASSES[s.label] == c}) for c in CLASSES}
    counts = ", ".join(f"{c} {images[c]} ({patients[c]} patients)" for c in CLASSES)
    try:
        train, val = split_by_patient(samples, val_fraction=0.2, seed=0)
    except DatasetError:
        train, val = [], []
    if not train or not val:
        return Check(name, FAIL, f"{len(samples)} images: {counts}. Too few patients for a training and a "
                     "validation split: confirm cases of more patients."), 0  # fmt: skip
    missing = [c for c in CLASSES if images[c] == 0]
    detail = f"{len(samples)} images of {len({s.patient_id for s in samples})} patients: {counts}; " \
             f"{len(train)} for training, {len(val)} for validation."  # fmt: skip
    if missing:
        return Check(name, WARN, f"{detail} No images of {', '.join(missing)}: this site still helps, but cannot "
                     "teach those classes."), len(train)  # fmt: skip
    return Check(name, OK, detail), len(train)


def estimate_cpu_round(train_images: int, val_images: int | None = None, epochs: int = 1) -> float:
    """Seconds for one round of the full network on this CPU (rough: the cost model above)."""
    val_images = val_images if val_images is not None else max(1, train_images // 4)
    return CPU_FIRST_STEP_S + epochs * train_images * CPU_SECONDS_PER_TRAIN_IMAGE + val_images * CPU_SECONDS_PER_EVAL_IMAGE


def check_device(train_images: int = 0, *, timeout: float = 120.0) -> Check:
    """The device that will train: GPU name(s) when TensorFlow sees one, else "CPU, slow" with an estimate."""
    name = "Training device"
    try:
        out = subprocess.run([sys.executable, "-c", DEVICE_PROBE], capture_output=True, text=True, timeout=timeout)
        gpus = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        gpus = None
    if gpus is None:
        return Check(name, WARN, "Could not ask TensorFlow which devices it sees; training will try the CPU.")
    if gpus:
        names = "; ".join(g["name"] for g in gpus)
        return Check(name, OK, f"GPU: {names}.")
    estimate = estimate_cpu_round(train_images)
    return Check(name, WARN, f"CPU, slow: no GPU visible to TensorFlow. A round with the full network on "
                 f"{train_images} images would take about {estimate / 60:.0f} min here.")  # fmt: skip


def check_disk(path: Path) -> Check:
    """Free space where the agent writes (the data folder)."""
    target = Path(path)
    while not target.exists() and target != target.parent:
        target = target.parent
    free = shutil.disk_usage(target).free
    text = f"{free / 1024**3:.1f} GB free in {target}."
    if free < MIN_FREE_DISK:
        return Check("Free disk", FAIL, f"{text} At least {MIN_FREE_DISK / 1024**3:.0f} GB are needed: free space.")
    return Check("Free disk", OK, text)


def check_central() -> list[Check]:
    """Clock and reachability of the enrolled central (one probe, up to 10 s)."""
    from app.core.enrollment import load_enrollment

    try:
        enrollment = load_enrollment()
    except AppError as exc:
        return [Check("Central", FAIL, str(exc))]
    if enrollment is None:
        return [Check("Central", FAIL, "This workstation is not enrolled: IT enrols it first (Enrol…).")]
    from app.core.central_client import CentralClient

    try:
        probed = CentralClient(enrollment).probe()
    except AppError as exc:
        return [Check("Clock", WARN, "Not checked: the central did not answer."), Check("Central", FAIL, str(exc))]
    clock = probed.clock
    clock_check = Check("Clock", clock.level, clock.message) if clock else Check(
        "Clock", WARN, "The central did not say its time; not checked.")  # fmt: skip
    central = Check("Central", OK, f"{enrollment.central_url} answers ({probed.latency * 1000:.0f} ms), with the CA "
                    "pinned at enrolment.")  # fmt: skip
    return [clock_check, central]


def run_checks(*, data_dir: Path | None = None, device: bool = True, central: bool = True) -> list[Check]:
    """Every check, in display order (device and central only when asked: they are the slow ones)."""
    from app.core.paths import data_dir as workstation_data

    folder = Path(data_dir) if data_dir is not None else training_data_dir()
    labelled, train_images = check_labelled_set(folder)
    checks = [labelled]
    if device:
        checks.append(check_device(train_images))
    checks.append(check_disk(workstation_data()))
    if central:
        checks.extend(check_central())
    return checks
