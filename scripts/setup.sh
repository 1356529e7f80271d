#!/usr/bin/env bash
# Set up what running the monitor needs on a fresh Debian machine: system packages (as root), the venv,
# the test models the quick start runs. What only the tests need is set up by scripts/test.sh.
# Idempotent: what is already there is kept. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt_packages.sh

# the MQTT broker the default configuration talks to, and what Qt's xcb plugin loads to open the console
RUN_PACKAGES=(mosquitto libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0
              libxcb-cursor0 libxcb-randr0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1
              libfontconfig1 libdbus-1-3)

python_env() {
  if [[ ! -x .venv/bin/python ]]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  # torch>=2.13,<2.14 resolves to the CPU wheel on this machine's disk (no CUDA download).
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test-models]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import monitor, pipeline, sinks, torch, transformers, av" \
    || { echo "setup: the Python install failed" >&2; exit 1; }
}

step "system packages" ensure_apt_packages "${RUN_PACKAGES[@]}"
step "Python packages (.venv)" python_env
step "test models (.models)" .venv/bin/python scripts/make_test_models.py .models
echo "setup: ready to run (.venv, .models); the tests set up the rest: bash scripts/test.sh" >&2
