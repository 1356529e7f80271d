#!/usr/bin/env bash
# Set up what only the tests need, on top of scripts/setup.sh: the parts they run for real (GStreamer's
# RTSP server, Xvfb, ffmpeg, the tool chain that builds llama.cpp's server), the test packages in .venv,
# llama-server and a Home Assistant in .tools/. Each is kept: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt_packages.sh

TEST_PACKAGES=(mosquitto-clients python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
               gstreamer1.0-plugins-good gstreamer1.0-plugins-bad ffmpeg cmake g++ ninja-build xvfb)

[[ -x .venv/bin/python ]] || bash scripts/setup.sh
test_python() {
  .venv/bin/python -c "import pytest, pytest_qt, pytest_asyncio, pytest_timeout, sklearn, ruff, mypy, fastapi, uvicorn" 2>/dev/null \
    && return 0
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,test-models]' 2>&1 | grep -v "^WARNING: Location" || true
}
step "test system packages" ensure_apt_packages "${TEST_PACKAGES[@]}"
step "test Python packages" test_python
step "llama-server (.tools)" bash scripts/build_llama_server.sh
step "Home Assistant (.tools/ha-venv)" bash scripts/install_home_assistant.sh
