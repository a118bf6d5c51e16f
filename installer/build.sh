#!/usr/bin/env bash
# Build the one-folder desktop app with PyInstaller into dist/fedxray, smoke-test it offscreen, pack a tarball.
#   bash installer/build.sh               # about 2 minutes; reuses build/ (a second run gives the same bundle)
#   bash installer/build.sh --clean       # also empties PyInstaller's caches first
#   bash installer/build.sh --no-tarball  # skip dist/fedxray-VERSION-linux-ARCH.tar.gz (about 1.5 minutes)
# The full check of a built bundle: .venv/bin/python -m pytest tests/installer
set -euo pipefail
cd "$(dirname "$0")/.."
clean="" tarball=1
for arg in "$@"; do
  case "$arg" in
    --clean) clean="--clean" ;;
    --no-tarball) tarball=0 ;;
    *) echo "usage: bash installer/build.sh [--clean] [--no-tarball]" >&2; exit 2 ;;
  esac
done
export TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0 FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

[ -x .venv/bin/python ] || bash installer/bootstrap.sh test --co -q >/dev/null
.venv/bin/python -c "import PyInstaller" 2>/dev/null || .venv/bin/python -m pip install -q -e ".[installer]"
[ -f resources/icons/fedxray.png ] && [ -f resources/icons/fedxray.ico ] || .venv/bin/python installer/make_icons.py

echo "== PyInstaller"
start=$SECONDS
.venv/bin/pyinstaller --noconfirm $clean --log-level WARN --distpath dist --workpath build installer/fedxray.spec
echo "built dist/fedxray in $((SECONDS - start)) s: $(du -sh dist/fedxray | cut -f1)"

echo "== smoke test (offscreen, a throw-away user profile)"
smoke=build/smoke
rm -rf "$smoke" && mkdir -p "$smoke"
export QT_QPA_PLATFORM=offscreen XDG_CONFIG_HOME="$PWD/$smoke/config" XDG_DATA_HOME="$PWD/$smoke/data" \
  XDG_CACHE_HOME="$PWD/$smoke/cache"
images=(resources/samples/normal_kermany_IM-0003.png)
dicom="${FEDXRAY_SHARED_DATA:-../shared/data}/dicom/RG1_J2KI.dcm"  # JPEG 2000: exercises the bundled decoders
[ -f "$dicom" ] && images+=("$dicom")
.venv/bin/python -m app classify --json "${images[@]}" >"$smoke/source.jsonl" 2>"$smoke/source.log"
dist/fedxray/fedxray classify --json "${images[@]}" >"$smoke/bundle.jsonl" 2>"$smoke/bundle.log"
dist/fedxray/fedxray classify --json --engine tensorflow "${images[@]}" >"$smoke/bundle-tf.jsonl" 2>"$smoke/bundle-tf.log"
.venv/bin/python - "$smoke/source.jsonl" "$smoke/bundle.jsonl" "$smoke/bundle-tf.jsonl" <<'EOF'
import json, sys
source, bundle, bundle_tf = ([json.loads(line) for line in open(p)] for p in sys.argv[1:])
assert [r["file"] for r in source] == [r["file"] for r in bundle] == [r["file"] for r in bundle_tf], (source, bundle)
for s, b, t in zip(source, bundle, bundle_tf):
    assert "error" not in b and "error" not in t, (b, t)
    diff = max(abs(s["probabilities"][c] - x["probabilities"][c]) for c in s["probabilities"] for x in (b, t))
    assert diff <= 1e-5 and s["predicted"] == b["predicted"] == t["predicted"], (s, b, t)
    print(f"classify {b['file']}: {b['predicted']} {b['probability']:.4f} (LiteRT and TensorFlow in the bundle "
          f"differ from the source tree by at most {diff:.1g})")
EOF
dist/fedxray/fedxray --convert-litert resources/models/default --into "$smoke/litert" >"$smoke/convert.log" 2>&1 \
  || { cat "$smoke/convert.log" >&2; exit 1; }
echo "LiteRT conversion in the bundle (the app's background conversion): $(du -h "$smoke/litert/model.tflite" | cut -f1)"
dist/fedxray/fedxray --bundle-selfcheck "$smoke/gui.json" --pdf "${images[0]}" >"$smoke/gui.log" 2>&1 \
  || { cat "$smoke/gui.json" "$smoke/gui.log" >&2; exit 1; }
echo "window: shown offscreen with a result ($smoke/gui.png), PDF report exported ($smoke/gui.pdf)"
for command in flower-supernode flower-superexec flwr-clientapp; do
  dist/fedxray/$command --help >/dev/null 2>&1 || { echo "dist/fedxray/$command does not start" >&2; exit 1; }
done
echo "flower-supernode, flower-superexec, flwr-clientapp: start"

if [ "$tarball" = 1 ]; then
  echo "== tarball"
  version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("fedxray"))')
  name="fedxray-$version-linux-$(uname -m)"
  tar -C dist -czf "dist/$name.tar.gz.part" fedxray
  mv "dist/$name.tar.gz.part" "dist/$name.tar.gz"
  (cd dist && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
  echo "dist/$name.tar.gz: $(du -h "dist/$name.tar.gz" | cut -f1) (checksum in $name.tar.gz.sha256)"
fi
echo "Built dist/fedxray (run dist/fedxray/fedxray)"
