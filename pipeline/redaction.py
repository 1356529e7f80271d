"""Keep secrets out of logs: credentials in URLs and known secret values."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://user:***@host/x``; other strings are returned as they are."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_CREDENTIALS.sub(r"\g<scheme>***@", url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    masked = f"{user}:***" if ":" in userinfo else "***"
    return urlunsplit(parts._replace(netloc=f"{masked}@{host}"))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL credentials and any of ``secrets`` (strings of 4 or more characters) in free text."""
    text = _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + _mask_userinfo(m.group("userinfo")) + "@", text)
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _mask_userinfo(userinfo: str) -> str:
    return f"{userinfo.split(':', 1)[0]}:***" if ":" in userinfo else "***"


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's final message (attach it to handlers)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message, self._secrets)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later; keep their text secret-free too.
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info), self._secrets)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        return True
