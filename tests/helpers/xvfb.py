"""A virtual X display of the test's own (Xvfb), for the console's real window through Qt's xcb plugin."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def xvfb_display(size: str = "1280x800x24") -> Iterator[str]:
    """Start Xvfb on a free display number (it picks and tells it when ready); yield ``:N``."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.fail("Xvfb is not installed: run scripts/test_setup.sh (apt-get install xvfb)")
    read, write = os.pipe()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [binary, "-displayfd", str(write), "-screen", "0", size, "-nolisten", "tcp"],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        os.close(write)
        try:
            with os.fdopen(read) as told:
                number = told.readline().strip()  # written once the display accepts clients
            if not number:
                log.seek(0)
                pytest.fail(f"Xvfb did not start: {log.read().decode(errors='replace')[-1000:]}")
            yield f":{number}"
        finally:
            proc.terminate()
            proc.wait(30)
