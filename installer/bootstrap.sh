#!/usr/bin/env bash
# Set up FedXray from a source checkout on Debian/Ubuntu with Python 3.11, then start the app or run the tests.
#   bash installer/bootstrap.sh app     # install and start the desktop app on its bundled default model
#   bash installer/bootstrap.sh test    # install everything the tests need, build the one-folder bundle (unless
#                                       # dist/fedxray is already built from this source) and run the whole suite
#   bash installer/bootstrap.sh bundle  # only the bundle step of `test`
# FEDXRAY_BUNDLE=skip leaves the bundle out (tests/installer/ is then skipped, as on a machine without one).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-app}"
shift || true

# Qt's xcb platform plugin (a desktop session), per Qt's documented Linux requirements.
QT_PACKAGES="libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0
  libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1 libxcb-glx0
  libx11-6 libx11-xcb1 libxkbcommon0 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libfreetype6 libglib2.0-0
  libdbus-1-3 fonts-dejavu-core"
# Tests: a real Secret Service (keyring), a real PostgreSQL server, a virtual X server, PDF tools, and Debian's
# Chromium with its WebDriver for the central dashboard's browser tests (Selenium drives /usr/bin/chromedriver);
# strace for the sealed offline test, libfaketime for the clock-skew enrolment test.
TEST_PACKAGES="gnome-keyring dbus dbus-x11 postgresql xvfb xauth poppler-utils chromium chromium-driver strace libfaketime"

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_bin() {
  for p in python3.11 python3.12 python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))'; then
      echo "$p"; return 0
    fi
  done
  echo "FedXray needs Python 3.11 or 3.12" >&2; exit 1
}

venv_install() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    "$(python_bin)" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
}

# What goes into the bundle, and so which source dist/fedxray was built from: git's hashes of these folders at the
# commit (a commit that changes only the README or the tests needs no new bundle), plus a hash of their uncommitted
# changes.
BUNDLE_INPUTS="app fl resources installer pyproject.toml"
bundle_source() {
  if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    echo "unknown (not a git checkout)"; return 0
  fi
  local id changes input
  # shellcheck disable=SC2086
  id="inputs-$(for input in $BUNDLE_INPUTS; do git rev-parse "HEAD:$input"; done | sha256sum | cut -c1-16)"
  # shellcheck disable=SC2086
  changes=$(git status --porcelain --untracked-files=all -- $BUNDLE_INPUTS)
  if [ -n "$changes" ]; then
    # shellcheck disable=SC2086
    id="$id+$( (git diff HEAD -- $BUNDLE_INPUTS; echo "$changes") | sha256sum | cut -c1-12)"
  fi
  echo "$id (commit $(git rev-parse --short HEAD))"
}

# CI runs tests/installer/ on the built bundle: build it (about 2-5 minutes) unless it is built from this source.
bundle_for_tests() {
  [ "${FEDXRAY_BUNDLE:-build}" = skip ] && { echo "== bundle: skipped (FEDXRAY_BUNDLE=skip)"; return 0; }
  local source stamp=dist/fedxray.source
  source=$(bundle_source)
  if [ -x dist/fedxray/fedxray ] && [ "$source" != "unknown (not a git checkout)" ] \
      && [ "$(cut -d' ' -f1 "$stamp" 2>/dev/null)" = "${source%% *}" ]; then
    echo "== bundle: dist/fedxray is already built from $source"
  else
    echo "== bundle: building dist/fedxray from $source"
    rm -f "$stamp"
    local start=$SECONDS
    bash installer/build.sh --no-tarball
    echo "$source" >"$stamp"
    echo "== bundle: built and smoke-tested in $((SECONDS - start)) s"
  fi
  export FEDXRAY_REQUIRE_BUNDLE=1  # tests/installer/ fails, rather than skips, without a bundle
}

case "$mode" in
  app)
    # shellcheck disable=SC2086
    apt_install $QT_PACKAGES
    venv_install ""
    exec .venv/bin/fedxray "$@"
    ;;
  test)
    # shellcheck disable=SC2086
    apt_install $QT_PACKAGES $TEST_PACKAGES
    venv_install "[dev,installer]"
    export QT_QPA_PLATFORM=offscreen TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0
    export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
    echo "== ruff"; .venv/bin/ruff check app fl central resources tests
    echo "== import contracts"; .venv/bin/lint-imports
    bundle_for_tests
    echo "== pytest"; exec .venv/bin/python -m pytest "$@"
    ;;
  bundle)
    # shellcheck disable=SC2086
    apt_install $QT_PACKAGES
    venv_install "[dev,installer]"
    bundle_for_tests
    ;;
  *)
    echo "usage: bash installer/bootstrap.sh app|test|bundle [args...]" >&2; exit 2
    ;;
esac
