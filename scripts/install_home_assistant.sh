#!/usr/bin/env bash
# Install a real Home Assistant (from PyPI) into its own venv, .tools/ha-venv, for the test that checks the
# monitor's MQTT discovery in it. Its own venv: Home Assistant pins many packages of its own. The
# requirements of the integrations the test loads (mqtt, api, auth and the frontend, without which Home
# Assistant starts in recovery mode) are installed too, at the versions 2024.3.3 pins, so it runs with
# --skip-pip; josepy < 2 because the acme release it pulls in still uses josepy 1's ComparableX509.
# 2024.3 is the newest release for Python 3.11. A second run does nothing. About 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2024.3.3
VENV=.tools/ha-venv
if [[ -x $VENV/bin/hass ]] && [[ $(cat .tools/ha.version 2>/dev/null) == "$VERSION" ]]; then
  exit 0
fi
echo "setup: installing Home Assistant $VERSION into $VENV (about 3 minutes)" >&2
rm -rf "$VENV"
"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "homeassistant==$VERSION" "paho-mqtt==1.6.1" \
  "home-assistant-frontend==20240307.0" "janus==1.0.0" "Pillow==10.2.0" "PyTurboJPEG==1.7.1" "SQLAlchemy==2.0.27" \
  "aiohttp-fast-url-dispatcher==0.3.0" "aiohttp-zlib-ng==0.3.1" "aiohttp_cors==0.7.0" "fnv-hash-fast==0.5.0" \
  "psutil-home-assistant==0.0.1" "josepy<2" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/hass" --version >/dev/null || { echo "setup: the Home Assistant install does not run" >&2; exit 1; }
echo "$VERSION" > .tools/ha.version
