"""Peak memory of `fedxray classify` with heatmaps on very large radiographs (issue 15: decode, heatmap and overlay
at a working resolution; target <= 1.5 GB for a folder of eight 6000 x 6000 images).

Run: .venv/bin/python tests/benchmarks/bench_large_images.py [--side 6000] [--count 8] [--source DIR] [--json OUT]
Not a test: it prints figures. The images are real radiographs from ../shared/data (or $FEDXRAY_SHARED_DATA)
enlarged to side x side: three of every four as 8-bit PNG, the rest as 16-bit uncompressed DICOM (MONOCHROME2).
Each measurement is one `fedxray classify --json --heatmap-dir` process on the bundled model (LiteRT, no
TensorFlow); its peak resident memory is the kernel's VmHWM read as the process ends. `--source DIR` runs the
code of another checkout (e.g. `git archive <commit> | tar -x -C DIR`) with this environment, for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The measured process: FedXray's own CLI, then its peak memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
# from the parent through fork and exec.
CHILD = """
import json, sys
sys.path.insert(0, {source!r})
import app
from app.cli import main
rc = main({args!r})
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({{"rc": rc, "peak_rss_kb": int(hwm), "app": app.__file__}}), file=sys.stderr)
"""


def shared_data() -> Path:
    env = os.environ.get("FEDXRAY_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def make_images(folder: Path, side: int, count: int) -> list[Path]:
    """`count` real radiographs enlarged to side x side (PNG 8-bit, every fourth one DICOM 16-bit)."""
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    files = sorted((shared_data() / "cxr").glob("*/*.png"))
    sources = files[:: max(1, len(files) // count)][:count]
    out = []
    for i, src in enumerate(sources):
        with Image.open(src) as img:
            big = img.convert("L").resize((side, side), Image.Resampling.BILINEAR)
        if i % 4 == 3:
            a = np.asarray(big, np.uint16) * 16                   # 12-bit values in 16 bits, as a detector gives
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SOPClassUID, ds.SOPInstanceUID = DigitalXRayImageStorageForPresentation, generate_uid()
            ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
            ds.Rows = ds.Columns = side
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = a.tobytes()
            path = folder / f"large-{i:02d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            assert pydicom.dcmread(path, stop_before_pixels=True).Rows == side
        else:
            path = folder / f"large-{i:02d}.png"
            big.save(path, compress_level=1)
        out.append(path)
    return out


def measure(source: Path, paths: list[Path], heat_dir: Path, images: int) -> dict:
    args = ["classify", "--json", "--heatmap-dir", str(heat_dir), *map(str, paths)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    with tempfile.TemporaryDirectory() as home:                  # a user who never ran FedXray: the bundled model
        env.update(XDG_CONFIG_HOME=f"{home}/c", XDG_DATA_HOME=f"{home}/d", XDG_CACHE_HOME=f"{home}/k")
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", CHILD.format(source=str(source), args=args)], cwd=source,
                             env=env, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
    status = json.loads(run.stderr.strip().splitlines()[-1])
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert status["rc"] == 0 and len(rows) == images and all("heatmap" in r for r in rows), run.stderr[-3000:]
    assert Path(status["app"]).resolve().is_relative_to(source.resolve()), status
    from PIL import Image

    with Image.open(rows[0]["heatmap"]) as img:
        overlay = list(img.size)
    return {"images": images, "peak_rss_mb": round(status["peak_rss_kb"] / 1024, 1),
            "seconds": round(seconds, 1), "overlay_size": overlay}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=6000)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--source", type=Path, default=REPO, help="checkout whose code is measured (default: this)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedxray-large-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = make_images(folder, a.side, a.count)
        out = {"side": a.side, "source": str(a.source),
               "one_image": measure(a.source, paths[:1], Path(tmp) / "heat1", 1),
               "folder": measure(a.source, [folder], Path(tmp) / "heat", len(paths))}
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
