#!/usr/bin/env bash
# The tests: set up what they need (scripts/test_setup.sh, once), then pytest with any arguments given,
# e.g. bash scripts/test.sh -m "not slow" or bash scripts/test.sh tests/test_mqtt.py
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test_setup.sh
exec .venv/bin/python -m pytest "$@"
