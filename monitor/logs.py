"""Logging set-up: one stderr handler whose records are scrubbed of secrets."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from pipeline.redaction import RedactingFilter

_NOISY = ("transformers", "huggingface_hub", "urllib3", "httpx", "PIL", "accelerate", "filelock")


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Log to stderr at ``level``, masking ``secrets`` and URL credentials in every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
