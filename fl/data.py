"""Chest X-ray data sets in class folders: discovery, patient-level split, fingerprint, tf.data pipeline."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from fl.classes import CLASSES

logger = logging.getLogger(__name__)

DEFAULT_CLASS_DIRS = {c: c for c in CLASSES}  # folder name -> class name
MANIFEST = "manifest.csv"
# Manifest columns naming an image's source, first found wins (the shared data set has `source_repo`).
SOURCE_COLUMNS = ("source", "source_repo")
# Largest loss weight of one (source, class) cell (source_class_weights): a cell of three images must not
# outweigh a whole class and make training chase them.
MAX_CELL_WEIGHT = 10.0

class DatasetError(ValueError):
    """A data folder that cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Sample:
    """One image file, its class index (into CLASSES), the patient it belongs to, and from the manifest (when
    it has the columns) the source it came from and its population ("" when unknown: one source)."""

    path: Path
    label: int
    patient_id: str
    source: str = ""
    population: str = ""


@dataclass(frozen=True)
class _ManifestRow:
    patient_id: str
    source: str
    population: str


def _read_manifest(root: Path) -> dict[str, _ManifestRow]:
    path = root / MANIFEST
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or ())
            missing = {"filename", "patient_id"} - columns
            if missing:
                raise DatasetError(
                    f"{path} lacks the column(s) {', '.join(sorted(missing))}: a manifest needs 'filename' "
                    "(path relative to the data folder) and 'patient_id'. Fix or remove the manifest."
                )
            source_column = next((c for c in SOURCE_COLUMNS if c in columns), None)
            rows: dict[str, _ManifestRow] = {}
            for row in reader:
                name = (row["filename"] or "").strip().replace("\\", "/")
                pid = (row["patient_id"] or "").strip()
                if name and pid:
                    source = (row[source_column] or "").strip() if source_column else ""
                    population = (row.get("population") or "").strip()
                    rows.setdefault(str(PurePosixPath(name)), _ManifestRow(pid, source, population))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"cannot read {path} ({e}); fix or remove the manifest") from e


def _image_files(folder: Path) -> tuple[list[Path], int]:
    """Image and DICOM files below `folder` (fl.imageio.walk_images), and the number of other files skipped."""
    from fl.imageio import walk_images

    found, skipped = [], 0
    for path, image in walk_images(folder, on_error=lambda p, e: logger.warning("Skipping %s: %s", p, e)):
        if image:
            found.append(path)
        else:
            skipped += 1
    return found, skipped


def discover(root, *, class_dirs: Mapping[str, str] | None = None) -> list[Sample]:
    """All image/DICOM files in the class folders of `root`, sorted by relative path.

    `class_dirs` maps folder names to class names (default: the class names themselves). The patient of each
    file comes from `root/manifest.csv` (columns filename, patient_id) when present; files it does not list
    get their file stem as patient id, and a warning gives their number.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"the data folder {root} does not exist or is not a folder")
    class_dirs = dict(DEFAULT_CLASS_DIRS if class_dirs is None else class_dirs)
    unknown = sorted(set(class_dirs.values()) - set(CLASSES))
    if unknown:
        raise DatasetError(f"unknown class name(s) {', '.join(unknown)}; the classes are {', '.join(CLASSES)}")
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    present = [d for d in subfolders if d in class_dirs]
    if not present:
        raise DatasetError(
            f"no class folders in {root}: expected folders named {', '.join(sorted(class_dirs))} "
            f"(found: {', '.join(subfolders) or 'none'})"
        )
    ignored = [d for d in subfolders if d not in class_dirs]
    if ignored:
        logger.warning("Ignoring folders that are not class folders in %s: %s", root, ", ".join(ignored))

    manifest = _read_manifest(root) if (root / MANIFEST).is_file() else None
    samples, skipped, unlisted = [], 0, 0
    for folder in present:
        label = CLASSES.index(class_dirs[folder])
        files, n_skipped = _image_files(root / folder)
        skipped += n_skipped
        for path in files:
            rel = path.relative_to(root).as_posix()
            row = manifest.get(rel) if manifest is not None else None
            if row is None:
                unlisted += manifest is not None
                row = _ManifestRow(path.stem, "", "")
            samples.append(Sample(path=path, label=label, patient_id=row.patient_id, source=row.source,
                                  population=row.population))
    samples.sort(key=lambda s: s.path.relative_to(root).as_posix())

    counts = Counter(s.label for s in samples)
    logger.info(
        "Found %d images in %s (%s); skipped %d non-image files",
        len(samples), root, ", ".join(f"{CLASSES[c]}: {counts[c]}" for c in sorted(counts)), skipped,
    )
    if unlisted:
        logger.warning(
            "%d of %d images are not listed in %s; each is treated as its own patient (patient id = file name)",
            unlisted, len(samples), root / MANIFEST,
        )
    return samples


def split_by_patient(samples: Sequence[Sample], *, val_fraction: float = 0.2, seed: int = 0
                     ) -> tuple[list[Sample], list[Sample]]:
    """Train/validation split with no patient on both sides, stratified by class, deterministic for `seed`.

    Patients are visited in a seeded random order, larger patients first, and each goes to validation if
    that brings the per-class validation counts closer to `val_fraction` of each class's count.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie between 0 and 1, got {val_fraction}")
    by_patient: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(CLASSES)))
    for s in samples:
        by_patient[s.patient_id][s.label] += 1
    if len(by_patient) < 2:
        raise DatasetError(
            f"cannot split {len(samples)} image(s) of {len(by_patient)} patient(s) into training and validation: "
            "at least two patients are needed"
        )
    target = val_fraction * sum(by_patient.values())
    order = sorted(by_patient)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda pid: -by_patient[pid].sum())  # stable: ties keep the seeded order

    val_counts = np.zeros(len(CLASSES))
    val_patients: set[str] = set()
    for pid in order:
        after = val_counts + by_patient[pid]
        if np.abs(after - target).sum() < np.abs(val_counts - target).sum():
            val_counts = after
            val_patients.add(pid)
    if not val_patients:  # tiny sets: the smallest patient still makes a validation set
        val_patients.add(order[-1])
    if len(val_patients) == len(order):
        val_patients.discard(order[0])

    train = [s for s in samples if s.patient_id not in val_patients]
    val = [s for s in samples if s.patient_id in val_patients]
    return train, val


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(samples: Sequence[Sample], *, root=None) -> str:
    """SHA-256 (hex) over the sorted (relative path, label, SHA-256 of content) of every sample.

    Paths are taken relative to `root`, by default the deepest folder holding all samples, so moving the
    data folder does not change the fingerprint; renaming, relabelling or editing any file does.
    """
    if not samples:
        raise DatasetError("cannot fingerprint an empty data set")
    if root is None:
        root = os.path.commonpath([str(Path(s.path).parent) for s in samples])
    rows = sorted(
        (Path(os.path.relpath(s.path, root)).as_posix(), int(s.label), _file_sha256(Path(s.path)))
        for s in samples
    )
    h = hashlib.sha256(b"fedxray-dataset-v1\n")
    for rel, label, digest in rows:
        h.update(f"{rel}\t{label}\t{digest}\n".encode())
    return h.hexdigest()


def class_weights(samples: Sequence[Sample], num_classes: int = len(CLASSES)) -> dict[int, float]:
    """Inverse-frequency weights per class index, scaled so the mean over present classes is 1.

    Classes with no samples get weight 1.0 (they never occur, but Keras wants every class in the dict).
    """
    counts = Counter(int(s.label) for s in samples)
    if not counts:
        raise DatasetError("cannot compute class weights of an empty data set")
    if max(counts) >= num_classes or min(counts) < 0:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, found {sorted(counts)}")
    inverse = {c: 1.0 / n for c, n in counts.items()}
    mean = sum(inverse.values()) / len(inverse)
    return {c: inverse[c] / mean if c in inverse else 1.0 for c in range(num_classes)}


def source_class_weights(samples: Sequence[Sample], *, max_weight: float = MAX_CELL_WEIGHT
                         ) -> dict[tuple[str, int], float]:
    """Loss weight of each (source, class) cell present in `samples`, so that every cell counts alike.

    Inverse frequency, w = c / n_cell, with c chosen so that the mean weight per sample is 1
    (sum over cells of n_cell x w = N), and no weight above `max_weight`: cells that would exceed it are held at
    `max_weight` and c is raised for the others until the mean is 1 again (water-filling; with every cell
    uncapped, c = N / number of cells). A few adult non-COVID case-report images then weigh like the many
    paediatric ones, instead of being drowned by the COVID-19 images of their own source.

    With one source (a site's own labelled set, or a folder without a `source` column in its manifest) the
    cells are the classes and these are inverse-frequency class weights (class_weights up to a common factor).
    """
    if max_weight < 1.0:
        raise ValueError(f"max_weight must be at least 1 (the mean weight), got {max_weight}")
    counts = Counter((s.source, int(s.label)) for s in samples)
    if not counts:
        raise DatasetError("cannot compute loss weights of an empty data set")
    total = sum(counts.values())
    capped: set[tuple[str, int]] = set()
    while True:
        free = [k for k in counts if k not in capped]
        if not free:  # only when max_weight == 1: every sample weighs 1
            return dict.fromkeys(counts, 1.0)
        c = (total - max_weight * sum(counts[k] for k in capped)) / len(free)
        over = {k for k in free if c / counts[k] > max_weight}
        if not over:
            break
        capped |= over
    return {k: (max_weight if k in capped else c / n) for k, n in counts.items()}


def sample_weights(samples: Sequence[Sample], *, max_weight: float = MAX_CELL_WEIGHT) -> list[float]:
    """source_class_weights of each sample, in the order of `samples` (for make_dataset's `weights`)."""
    cells = source_class_weights(samples, max_weight=max_weight)
    return [cells[(s.source, int(s.label))] for s in samples]


def _affine_scaling(scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with to_model_input(x) == x[..., None] * a + b, read off fl.preprocess (its single definition)."""
    from fl.preprocess import to_model_input

    zeros = np.zeros((8, 8), np.float32)
    offset = np.asarray(to_model_input(zeros, scaling), np.float64)[0, 0]
    gain = np.asarray(to_model_input(zeros + 1.0, scaling), np.float64)[0, 0] - offset
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    if not np.allclose(to_model_input(ramp, scaling), ramp[..., None] * gain + offset, atol=1e-5):
        raise NotImplementedError(f"scaling {scaling!r} is not per-channel affine; fl.data cannot reproduce it")
    return gain.astype(np.float32), offset.astype(np.float32)


def make_dataset(samples: Sequence[Sample], *, input_size: int, scaling: str, batch_size: int, training: bool,
                 augment: bool | None = None, source_cues: bool = False, weights: Sequence[float] | None = None,
                 cache: bool = True, seed: int = 0):
    """tf.data pipeline yielding (x (B, S, S, 3) float32 scaled for the model, y one-hot (B, C) float32), and
    a third element, the per-sample loss weights (B,) float32, when `weights` (one per sample) is given.

    Each file is read and letterboxed by fl.preprocess (the same code as inference); unreadable files are
    skipped with a warning. Decoded [0, 1] images are cached in memory (`cache`), shuffled with `seed` when
    `training`, given the source-cue augmentations of fl.augment (`source_cues`, training only), augmented in
    geometry and intensity (`augment`, default: when training), then scaled exactly like
    fl.preprocess.to_model_input.
    """
    import tensorflow as tf

    from fl.augment import geometric_intensity_batch, source_cue_batch
    from fl.preprocess import ImageReadError, letterbox, read_image

    augment = training if augment is None else augment
    if source_cues and not training:
        raise ValueError("source-cue augmentations are for training only; never at validation or inference")
    if weights is not None and len(weights) != len(samples):
        raise ValueError(f"got {len(weights)} loss weights for {len(samples)} samples")
    gain, offset = _affine_scaling(scaling)
    paths = [str(s.path) for s in samples]
    labels = np.eye(len(CLASSES), dtype=np.float32)[[int(s.label) for s in samples]].reshape(-1, len(CLASSES))
    w = np.ones(len(samples), np.float32) if weights is None else np.asarray(weights, np.float32)

    def decode(path: bytes):
        try:
            square, _ = letterbox(read_image(path.decode()).pixels, input_size)
            return np.asarray(square, np.float32), True
        except ImageReadError as e:
            logger.warning("Skipping %s: %s", path.decode(), e)
            return np.zeros((input_size, input_size), np.float32), False

    def decode_tf(path, y, w):
        x, ok = tf.numpy_function(decode, [path], [tf.float32, tf.bool], stateful=False)
        x = tf.reshape(x, [input_size, input_size, 1])
        return x, y, w, tf.reshape(ok, [])

    gain_t, offset_t = tf.constant(gain), tf.constant(offset)

    def decoded_ok(x, y, w, ok):
        return ok

    def drop_flag(x, y, w, ok):
        return x, y, w

    def augment_batch(xyw, pair):
        x = xyw[0]
        if source_cues:
            x = tf.reshape(tf.numpy_function(source_cue_batch, [x, pair], tf.float32, stateful=False), tf.shape(x))
        if augment:
            x = geometric_intensity_batch(tf, x, pair)
        return (x, *xyw[1:])

    def scale(x, y, w):
        return (x * gain_t + offset_t, y, w) if weights is not None else (x * gain_t + offset_t, y)

    ds = tf.data.Dataset.from_tensor_slices((paths, labels, w))
    ds = ds.map(decode_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(decoded_ok).map(drop_flag)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(max(len(paths), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment or source_cues:
        # One stateless seed pair per batch: deterministic for `seed`, different in every epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                                  deterministic=True)
    ds = ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
