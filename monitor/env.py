"""Secrets from the environment (and a ``.env`` file), and the list of values logs must never show."""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGINGFACE_API_KEY")
"""Where the Hugging Face token is looked for, in order (LLMVAD used HUGGINGFACE_API_KEY)."""


def load_env_file(path: Path, environ: MutableMapping[str, str] | None = None) -> bool:
    """Add the variables of a ``.env`` file that are not already set; True if the file exists."""
    environ = os.environ if environ is None else environ
    if not path.is_file():
        return False
    for key, value in dotenv_values(path).items():
        if value is not None and key not in environ:
            environ[key] = value
    return True


def hf_token(environ: MutableMapping[str, str] | None = None) -> str | None:
    """The Hugging Face token from ``HF_TOKEN`` or ``HUGGINGFACE_API_KEY``, if any."""
    environ = os.environ if environ is None else environ
    for name in TOKEN_VARIABLES:
        if environ.get(name):
            return environ[name]
    return None


def secrets_to_hide(urls: Iterable[str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Values to mask in logs: the HF token and the passwords inside source URLs."""
    found = [t for t in (hf_token(environ),) if t]
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            found.extend({password, unquote(password)})
    return found
