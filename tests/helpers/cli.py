"""The monitor's command line as a test runs it: ``python -m monitor ...`` in a child process."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def monitor_command(*args: object) -> list[str]:
    """``python -m monitor ARGS`` (paths and numbers as strings), to run with ``cwd=ROOT``."""
    return [sys.executable, "-m", "monitor", *(str(a) for a in args)]
