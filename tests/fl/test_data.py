"""Tests for fl.data: discovery, patient split, fingerprint, class weights and the tf.data pipeline."""

import csv
import hashlib
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fl.classes import CLASSES
from fl.data import (
    DatasetError,
    Sample,
    class_weights,
    discover,
    fingerprint,
    make_dataset,
    sample_weights,
    source_class_weights,
    split_by_patient,
)

# ---------------------------------------------------------------- helpers


@pytest.fixture
def cxr(shared_data) -> Path:
    return shared_data / "cxr"


def _real_pngs(cxr: Path, per_class: int) -> dict[str, list[Path]]:
    return {c: sorted((cxr / c).glob("*.png"))[:per_class] for c in CLASSES}


def _copy_set(cxr: Path, dest: Path, per_class: int) -> Path:
    """A small class-folder data set of real PNGs (no manifest)."""
    for c, files in _real_pngs(cxr, per_class).items():
        (dest / c).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dest / c / f.name)
    return dest


def _fake_samples(patients: dict[str, list[int]]) -> list[Sample]:
    """Samples (paths need not exist for splitting) from {patient: [labels of their images]}."""
    return [
        Sample(Path(f"/nowhere/{CLASSES[label]}/{pid}_{i}.png"), label, pid)
        for pid, labels in sorted(patients.items())
        for i, label in enumerate(labels)
    ]


# ---------------------------------------------------------------- discover


def test_discover_real_set_matches_folders_and_manifest(cxr, caplog):
    # Expected counts, listed independently from the folders.
    expected_counts = {c: sum(1 for f in (cxr / c).iterdir() if f.suffix == ".png") for c in CLASSES}
    with open(cxr / "manifest.csv", newline="") as f:
        manifest = {row["filename"]: row["patient_id"] for row in csv.DictReader(f)}

    with caplog.at_level(logging.INFO, logger="fl.data"):
        samples = discover(cxr)

    assert len(samples) == 673 == sum(expected_counts.values())
    assert Counter(CLASSES[s.label] for s in samples) == expected_counts
    for s in samples:
        rel = s.path.relative_to(cxr).as_posix()
        assert rel.split("/")[0] == CLASSES[s.label]
        assert s.patient_id == manifest[rel]
    rels = [s.path.relative_to(cxr).as_posix() for s in samples]
    assert rels == sorted(rels)
    assert len({s.patient_id for s in samples}) == len(set(manifest.values())) == 593
    assert "not listed" not in caplog.text  # every file is in the manifest
    assert discover(cxr) == samples  # deterministic


def test_discover_skips_hidden_and_non_image_files(cxr, shared_data, tmp_path, caplog):
    png = sorted((cxr / "Covid").glob("*.png"))[0]
    files = {
        "Covid/a.png": png,
        "Covid/b.JPG": png,  # extension only matters for discovery
        "Covid/.hidden.png": png,
        "Covid/notes.md": None,
        "Covid/list.csv": None,
        "Normal/sub/c.tiff": png,
        "Normal/.cache/d.png": png,
        "Normal/e.bmp": png,
        "Pneumonia-Viral/IM0001": shared_data / "dicom" / "CT_small.dcm",  # DICOM without extension
        "Pneumonia-Viral/README": None,  # no extension, not DICOM
        "Pneumonia-Viral/f.dcm": shared_data / "dicom" / "CT_small.dcm",
        "Extra/g.png": png,  # not a class folder
    }
    for rel, src in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if src is None:
            (tmp_path / rel).write_text("not an image\n")
        else:
            shutil.copy(src, tmp_path / rel)
    (tmp_path / "manifest.csv").write_text("filename,patient_id\nCovid/a.png,p1\nCovid/b.JPG,p1\n")

    with caplog.at_level(logging.INFO, logger="fl.data"):
        samples = discover(tmp_path)

    got = [(s.path.relative_to(tmp_path).as_posix(), CLASSES[s.label], s.patient_id) for s in samples]
    assert got == [
        ("Covid/a.png", "Covid", "p1"),
        ("Covid/b.JPG", "Covid", "p1"),
        ("Normal/e.bmp", "Normal", "e"),
        ("Normal/sub/c.tiff", "Normal", "c"),
        ("Pneumonia-Viral/IM0001", "Pneumonia-Viral", "IM0001"),
        ("Pneumonia-Viral/f.dcm", "Pneumonia-Viral", "f"),
    ]
    assert "4 of 6 images are not listed" in caplog.text
    assert "Extra" in caplog.text  # ignored folder is reported
    assert "skipped 3 non-image files" in caplog.text  # notes.md, list.csv, README


def test_discover_with_class_folder_mapping(tmp_path):
    for folder in ("covid19", "healthy", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(b"")
    samples = discover(tmp_path, class_dirs={"covid19": "Covid", "healthy": "Normal"})
    assert [(s.path.parent.name, s.label) for s in samples] == [("covid19", 0), ("healthy", 1)]


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        (lambda root: None, {}, "no class folders"),
        (lambda root: (root / "cats").mkdir(), {}, r"found: cats"),
        (lambda root: (root / "Covid").mkdir(), {"class_dirs": {"Covid": "COVID"}}, "unknown class name"),
        (
            lambda root: ((root / "Covid").mkdir(), (root / "manifest.csv").write_text("file,patient\n")),
            {},
            "lacks the column",
        ),
    ],
)
def test_discover_refuses_unusable_folders(tmp_path, setup, kwargs, message):
    setup(tmp_path)
    with pytest.raises(DatasetError, match=message):
        discover(tmp_path, **kwargs)


def test_discover_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "absent")


# ---------------------------------------------------------------- split_by_patient


def test_split_real_set_by_patient(cxr):
    samples = discover(cxr)
    train, val = split_by_patient(samples, val_fraction=0.2, seed=0)

    assert sorted(train + val, key=lambda s: str(s.path)) == sorted(samples, key=lambda s: str(s.path))
    assert not {s.patient_id for s in train} & {s.patient_id for s in val}
    assert len(val) / len(samples) == pytest.approx(0.2, abs=0.02)
    # Stratified: each class is split close to the same fraction.
    total, in_val = Counter(s.label for s in samples), Counter(s.label for s in val)
    for c in range(len(CLASSES)):
        assert in_val[c] / total[c] == pytest.approx(0.2, abs=0.03), CLASSES[c]
    # The patient with the most images (cohen:253, 8) is wholly on one side.
    sides = {s in val for s in samples if s.patient_id == "cohen:253"}
    assert len(sides) == 1

    assert split_by_patient(samples, val_fraction=0.2, seed=0) == (train, val)
    _, val_other = split_by_patient(samples, val_fraction=0.2, seed=1)
    assert val_other != val


def test_split_small_sets():
    # 10 single-image patients, 5 per class: 20% -> one patient of each class in validation.
    samples = _fake_samples({f"p{i}": [i % 2] for i in range(10)})
    train, val = split_by_patient(samples, val_fraction=0.2, seed=3)
    assert sorted(s.label for s in val) == [0, 1]
    assert len(train) == 8
    # Two patients only: each side gets one.
    train, val = split_by_patient(_fake_samples({"a": [0, 0], "b": [1]}), val_fraction=0.2)
    assert len({s.patient_id for s in train}) == 1 and len({s.patient_id for s in val}) == 1


def test_split_refuses_impossible_requests():
    with pytest.raises(DatasetError, match="at least two patients"):
        split_by_patient(_fake_samples({"a": [0, 1, 2]}))
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_patient(_fake_samples({"a": [0], "b": [1]}), val_fraction=1.0)


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_tracks_names_labels_and_contents(cxr, tmp_path):
    root = _copy_set(cxr, tmp_path / "set", per_class=1)
    base = fingerprint(discover(root))
    assert len(base) == 64 and int(base, 16) >= 0

    # Recomputed independently: SHA-256 over sorted "relative path \t label \t content SHA-256" lines.
    rows = sorted(
        (p.relative_to(root).as_posix(), CLASSES.index(p.parent.name), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in root.glob("*/*.png")
    )
    h = hashlib.sha256(b"fedxray-dataset-v1\n")
    for rel, label, digest in rows:
        h.update(f"{rel}\t{label}\t{digest}\n".encode())
    assert base == h.hexdigest()

    # Nothing changed, or the whole folder moved: same fingerprint.
    assert fingerprint(discover(root)) == base
    moved = shutil.copytree(root, tmp_path / "elsewhere")
    assert fingerprint(discover(moved)) == base

    # Relabelled (same files, other class index): different.
    samples = discover(root)
    relabelled = [Sample(s.path, (s.label + 1) % 4, s.patient_id) if i == 0 else s for i, s in enumerate(samples)]
    assert fingerprint(relabelled) != base

    # Renamed: different.
    first = samples[0].path
    renamed = first.with_name("renamed.png")
    first.rename(renamed)
    assert fingerprint(discover(root)) != base
    renamed.rename(first)
    assert fingerprint(discover(root)) == base

    # Content changed by one byte: different.
    data = first.read_bytes()
    first.write_bytes(data + b"\0")
    assert fingerprint(discover(root)) != base
    first.write_bytes(data)
    assert fingerprint(discover(root)) == base


# ---------------------------------------------------------------- class_weights


def test_class_weights_by_hand():
    # Counts 1, 2, 4, 1 -> inverse 1, 1/2, 1/4, 1 (mean 2.75/4 = 0.6875) -> divided by the mean.
    samples = _fake_samples({"a": [0, 1, 1, 2, 2, 2, 2, 3]})
    w = class_weights(samples)
    expected = {0: 1 / 0.6875, 1: 0.5 / 0.6875, 2: 0.25 / 0.6875, 3: 1 / 0.6875}
    assert w == pytest.approx(expected, rel=1e-12)
    assert sum(w.values()) / 4 == pytest.approx(1.0, rel=1e-12)
    # Each class then carries the same total weight: count x weight = 1.4545... for all.
    assert {round(n * w[c], 12) for c, n in {0: 1, 1: 2, 2: 4, 3: 1}.items()} == {round(1 / 0.6875, 12)}


def test_class_weights_with_absent_classes():
    # Counts 2, 6 -> inverse 1/2, 1/6 (mean 1/3) -> 1.5, 0.5; absent classes 1.0.
    w = class_weights(_fake_samples({"a": [0, 0, 1, 1, 1, 1, 1, 1]}), num_classes=4)
    assert w == pytest.approx({0: 1.5, 1: 0.5, 2: 1.0, 3: 1.0}, rel=1e-12)
    with pytest.raises(DatasetError):
        class_weights([])


# ---------------------------------------------------------------- source_class_weights


def _manifest_set(root: Path, cells: dict[tuple[str, str], int]) -> Path:
    """Small PNGs in class folders and a manifest naming each one's patient, source and population."""
    rows = []
    for (source, cls), n in cells.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{cls}/{source}_{i}.png"
            Image.fromarray(np.full((16, 16), 40 * i % 255, np.uint8)).save(root / name)
            rows.append({"filename": name, "patient_id": f"{source}:{cls}:{i}", "source_repo": source,
                         "population": "adult/mixed (case reports)" if source == "A" else "pediatric (B)"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["filename", "patient_id", "source_repo", "population"])
        w.writeheader()
        w.writerows(rows)
    return root


CELLS = {("A", "Covid"): 6, ("A", "Normal"): 2, ("B", "Normal"): 8, ("B", "Pneumonia-Bacterial"): 4}


def test_discover_reads_source_and_population_from_the_manifest(tmp_path):
    samples = discover(_manifest_set(tmp_path, CELLS))
    assert Counter((s.source, CLASSES[s.label]) for s in samples) == Counter(CELLS)
    assert {s.population for s in samples if s.source == "A"} == {"adult/mixed (case reports)"}
    # Without a manifest: one unknown source.
    (tmp_path / "manifest.csv").unlink()
    assert {(s.source, s.population) for s in discover(tmp_path)} == {("", "")}


def test_source_class_weights_by_hand(tmp_path):
    samples = discover(_manifest_set(tmp_path, CELLS))
    # N = 20 images in 4 cells: w = (N / 4) / n_cell = 5 / n_cell.
    w = source_class_weights(samples)
    covid, normal, bact = (CLASSES.index(c) for c in ("Covid", "Normal", "Pneumonia-Bacterial"))
    assert w == pytest.approx({("A", covid): 5 / 6, ("A", normal): 5 / 2, ("B", normal): 5 / 8, ("B", bact): 5 / 4})
    per_sample = sample_weights(samples)
    assert np.mean(per_sample) == pytest.approx(1.0)
    assert per_sample == [w[(s.source, s.label)] for s in samples]

    # Capped at 2: A/Normal is held at 2; the other cells share the rest, (20 - 2 x 2) / 3 = 16 / 3 each.
    w = source_class_weights(samples, max_weight=2.0)
    assert w == pytest.approx({("A", covid): 16 / 18, ("A", normal): 2.0, ("B", normal): 16 / 24,
                               ("B", bact): 16 / 12})
    assert np.mean(sample_weights(samples, max_weight=2.0)) == pytest.approx(1.0)
    assert max(w.values()) <= 2.0
    # A cap of 1 is the mean: every sample weighs 1. Below 1 the mean cannot be 1.
    assert set(source_class_weights(samples, max_weight=1.0).values()) == {1.0}
    with pytest.raises(ValueError, match="at least 1"):
        source_class_weights(samples, max_weight=0.5)
    with pytest.raises(DatasetError, match="empty"):
        source_class_weights([])


def test_one_source_reduces_to_class_weights():
    # A site's own labelled set: one source, so the cells are the classes; the ratios are class_weights'.
    samples = _fake_samples({"a": [0, 0, 0, 1], "b": [1, 2, 2, 2, 2, 2], "c": [0, 0]})
    cells = source_class_weights(samples)
    per_class = class_weights(samples)
    assert set(cells) == {("", 0), ("", 1), ("", 2)}
    ratios = [cells[("", c)] / per_class[c] for c in (0, 1, 2)]
    assert ratios == pytest.approx([ratios[0]] * 3)
    # Mean per sample 1: 12 images, 3 classes -> 4 / n_class.
    assert cells == pytest.approx({("", 0): 4 / 5, ("", 1): 4 / 2, ("", 2): 4 / 5})


def test_make_dataset_carries_the_loss_weights_in_order(tmp_path):
    samples = discover(_manifest_set(tmp_path, CELLS))
    weights = sample_weights(samples)
    ds = make_dataset(samples, input_size=16, scaling="tf", batch_size=6, training=False, weights=weights)
    got_y, got_w = [], []
    for x, y, w in ds:
        assert x.shape[1:] == (16, 16, 3)
        got_y += y.numpy().argmax(1).tolist()
        got_w += w.numpy().tolist()
    assert got_y == [s.label for s in samples]
    assert got_w == pytest.approx(weights)
    with pytest.raises(ValueError, match="2 loss weights for 20 samples"):
        make_dataset(samples, input_size=16, scaling="tf", batch_size=6, training=False, weights=[1.0, 1.0])


def test_source_cues_are_refused_outside_training(tmp_path):
    samples = discover(_manifest_set(tmp_path, {("A", "Covid"): 2}))
    with pytest.raises(ValueError, match="training only"):
        make_dataset(samples, input_size=16, scaling="tf", batch_size=2, training=False, source_cues=True)


# ---------------------------------------------------------------- make_dataset

SIZE = 64


@pytest.fixture
def small_set(cxr, tmp_path) -> list[Sample]:
    return discover(_copy_set(cxr, tmp_path / "small", per_class=3))


def _collect(ds):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize(("scaling", "low", "high"), [("tf", -1.0, 1.0), ("torch", None, None)])
def test_validation_pipeline_equals_load_for_model(small_set, scaling, low, high):
    from fl.preprocess import load_for_model

    ds = make_dataset(small_set, input_size=SIZE, scaling=scaling, batch_size=5, training=False)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(y) for _, y in batches] == [5, 5, 2]
    x, y = _collect(ds)
    assert x.shape == (12, SIZE, SIZE, 3) and x.dtype == np.float32
    assert y.shape == (12, 4) and y.dtype == np.float32
    # Order kept, labels one-hot.
    assert y.tolist() == np.eye(4)[[s.label for s in small_set]].tolist()
    expected = np.stack([load_for_model(s.path, input_size=SIZE, scaling=scaling) for s in small_set])
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-5)
    if low is not None:
        assert x.min() >= low and x.max() <= high
    # Deterministic from one pass to the next (no augmentation, no shuffling).
    np.testing.assert_array_equal(_collect(ds)[0], x)


def test_training_without_augmentation_only_shuffles(small_set):
    plain, _ = _collect(make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=False))
    ds = make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=True, augment=False, seed=1)
    shuffled, y = _collect(ds)
    order = [next(i for i in range(len(plain)) if np.array_equal(img, plain[i])) for img in shuffled]
    assert sorted(order) == list(range(12)) and order != list(range(12))
    assert y.argmax(1).tolist() == [small_set[i].label for i in order]


def test_augmentation_changes_images_keeps_range_and_is_seeded(small_set):
    plain, _ = _collect(make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=False))
    ds = make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=True, seed=7)
    epoch1, y1 = _collect(ds)
    epoch2, _ = _collect(ds)

    assert epoch1.shape == plain.shape and epoch1.dtype == np.float32
    assert epoch1.min() >= -1.0 and epoch1.max() <= 1.0  # [0, 1] before scaling
    assert Counter(y1.argmax(1).tolist()) == Counter(s.label for s in small_set)
    # No augmented image equals any plain one, and the epochs differ.
    assert all(np.abs(a - p).mean() > 1e-3 for a in epoch1 for p in plain)
    assert np.abs(epoch1 - epoch2).mean() > 1e-3
    # Augmented images stay close to some original: small transformations only.
    assert all(min(np.abs(a - p).mean() for p in plain) < 0.3 for a in epoch1)

    # Same seed, same data: the same epochs; another seed: different.
    again = make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=True, seed=7)
    np.testing.assert_array_equal(_collect(again)[0], epoch1)
    other = make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=True, seed=8)
    assert np.abs(_collect(other)[0] - epoch1).mean() > 1e-3


def test_augmentation_never_mirrors(tmp_path):
    # Dark image with a bright block in the upper-left quadrant; square so there is no letterbox padding.
    pixels = np.full((SIZE, SIZE), 30, np.uint8)
    pixels[6:26, 6:26] = 230
    (tmp_path / "Covid").mkdir()
    Image.fromarray(pixels).save(tmp_path / "Covid" / "marker.png")
    sample = discover(tmp_path)[0]

    ds = make_dataset([sample] * 64, input_size=SIZE, scaling="tf", batch_size=16, training=True, seed=0)
    for _ in range(2):  # two epochs: 128 random transformations
        x, _ = _collect(ds)
        img = x[..., 0]
        h = SIZE // 2
        quadrants = np.stack([img[:, :h, :h], img[:, :h, h:], img[:, h:, :h], img[:, h:, h:]]).mean(axis=(2, 3))
        # Upper-left stays the brightest quadrant in every image: no left-right (or up-down) flip.
        assert (quadrants.argmax(axis=0) == 0).all()
        assert (quadrants[0] - quadrants[1:].max(axis=0) > 0.25).all()
        # Left half brighter than the right half.
        assert (img[:, :, :h].mean(axis=(1, 2)) > img[:, :, h:].mean(axis=(1, 2)) + 0.1).all()


def test_unreadable_files_are_skipped_with_a_warning(small_set, tmp_path, caplog):
    bad = tmp_path / "small" / "Normal" / "broken.png"
    bad.write_text("this is not a PNG")
    samples = discover(tmp_path / "small")
    assert len(samples) == 13
    with caplog.at_level(logging.WARNING, logger="fl.data"):
        x, y = _collect(make_dataset(samples, input_size=SIZE, scaling="tf", batch_size=8, training=False))
    assert x.shape[0] == 12
    assert y.argmax(1).tolist() == [s.label for s in samples if s.path != bad]
    assert "broken.png" in caplog.text


def test_source_cue_pipeline_is_seeded_and_changes_images(small_set):
    plain, _ = _collect(make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=False))

    def epoch(seed):
        ds = make_dataset(small_set, input_size=SIZE, scaling="tf", batch_size=4, training=True, augment=False,
                          source_cues=True, seed=seed)
        return _collect(ds)

    a, y = epoch(5)
    assert a.shape == plain.shape and a.min() >= -1.0 and a.max() <= 1.0
    assert Counter(y.argmax(1).tolist()) == Counter(s.label for s in small_set)
    np.testing.assert_array_equal(epoch(5)[0], a)
    assert np.abs(epoch(6)[0] - a).mean() > 1e-3
    # Most images differ from every plain one (shuffled, so compare with the closest).
    changed = [min(np.abs(img - p).max() for p in plain) > 0.05 for img in a]
    assert sum(changed) >= len(a) // 2
