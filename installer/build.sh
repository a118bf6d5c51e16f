#!/usr/bin/env bash
# Build the one-folder desktop app with PyInstaller into dist/fedxray, then smoke-test it offscreen.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash installer/bootstrap.sh test --co -q >/dev/null
.venv/bin/pip install -q -e ".[installer]"
.venv/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build installer/fedxray.spec
QT_QPA_PLATFORM=offscreen dist/fedxray/fedxray classify --json "$(ls resources/samples/*.png | head -1)"
tar -C dist -czf "dist/fedxray-$(.venv/bin/python -c 'from importlib.metadata import version; print(version("fedxray"))')-linux-x86_64.tar.gz" fedxray
echo "Built dist/fedxray (run dist/fedxray/fedxray)"
