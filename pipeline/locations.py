"""Where a source is: a stream URL or a video file, checked before anything opens it, and shown short."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
HOSTED_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https"})
"""Schemes whose URL must name a host (udp://, srt:// and the like may listen on a local port)."""
SHOWN_CHARS = 120
"""Longer paths and URLs are shown as their start and end."""


def is_live_url(url: str) -> bool:
    """Whether a URL names a live stream (by its scheme) rather than a file."""
    return urlsplit(url).scheme.lower() in LIVE_SCHEMES


def checked_url(url: str) -> str:
    """``url`` as a source takes it: a path as it is, ``file://`` as its path, a stream URL when its scheme
    is known, it names a host where it must and its port is in range. ValueError says what is wrong."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError("a file:// URL takes a local path: file:///path/to/video.mp4")
        return unquote(parts.path)
    if scheme not in LIVE_SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(LIVE_SCHEMES))
        raise ValueError(f"unknown URL scheme {scheme + '://'!r}: use one of {known} or a file path")
    if scheme in HOSTED_SCHEMES and not parts.hostname:
        raise ValueError(f"the URL names no host: {scheme}://HOST[:PORT]/PATH")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the URL's port is out of range (1-65535)")
    return url


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a video file, or None when it is a readable regular file."""
    if path == "-":
        return "standard input cannot be a source: give a video file or a stream URL"
    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        return {
            errno.ENOENT: "file not found",
            errno.ENOTDIR: "file not found (a part of the path is not a folder)",
            errno.ENAMETOOLONG: "path too long (a name over 255 bytes, or the whole over 4096)",
            errno.ELOOP: "a loop of symbolic links",
            errno.EACCES: "permission denied",
        }.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    except ValueError:  # a NUL in the path
        return "not a valid path"
    if stat.S_ISDIR(mode):
        return "is a directory, not a video file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a video file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a video file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def shown(text: str) -> str:
    """A path or URL for a message: as it is, or its start and end when it is very long."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[: SHOWN_CHARS // 2]}...{text[-SHOWN_CHARS // 3 :]} ({len(text)} characters)"
