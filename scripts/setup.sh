#!/usr/bin/env bash
# Set up everything on a fresh Debian machine: system packages (as root), the venv, the test models.
# Idempotent: what is already there is kept. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
              gstreamer1.0-plugins-good gstreamer1.0-plugins-bad ffmpeg cmake g++ ninja-build
              # what Qt's xcb plugin loads to open the console's window on a desktop, and Xvfb to test it
              libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-cursor0
              libxcb-randr0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1
              libdbus-1-3 xvfb)
wait_for_apt() {
  local lock waited=0
  for lock in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock; do
    [[ -e $lock ]] || continue
    # apt and dpkg hold fcntl locks: ask for one without blocking until nobody holds it
    until python3 -c 'import fcntl, sys; fcntl.lockf(open(sys.argv[1], "a"), fcntl.LOCK_EX | fcntl.LOCK_NB)' \
        "$lock" 2>/dev/null; do
      ((waited == 0)) && echo "setup: waiting for another apt or dpkg to finish ($lock)" >&2
      ((waited += 5))
      ((waited <= 600)) || { echo "setup: $lock still held after 10 minutes" >&2; exit 1; }
      sleep 5
    done
  done
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: installing ${missing[*]}" >&2
    # another apt (unattended upgrades on a fresh machine) may hold the locks: wait for it, up to 10 min
    wait_for_apt
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "setup: please install (as root): apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
# torch>=2.13,<2.14 resolves to the CPU wheel on this machine's disk (no CUDA download).
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,test-models]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import monitor, pipeline, sinks, torch, transformers, av" \
  || { echo "setup: the Python install failed" >&2; exit 1; }

.venv/bin/python scripts/make_test_models.py .models
bash scripts/build_llama_server.sh
bash scripts/install_home_assistant.sh
echo "setup: ready (.venv, .models, .tools: llama-server, Home Assistant)" >&2
