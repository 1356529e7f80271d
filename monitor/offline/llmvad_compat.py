"""LLMVAD's pickled outputs: written for its users, and read back only through a restricted unpickler."""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_PICKLE_BYTES = 64 * 1024 * 1024
_PLAIN = (list, dict, str, int, float, bool, type(None))


class UnsafePickleError(Exception):
    """A pickle asked for something other than plain lists, dicts, strings and numbers."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what the pickle protocol itself can express: no classes, no functions, no imports."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"refused: the pickle wants {module}.{name}; only plain lists, dicts, strings and numbers are accepted"
        )


def _check_plain(obj: Any, depth: int = 0) -> None:
    if depth > 100:
        raise UnsafePickleError("refused: nested too deeply")
    if not isinstance(obj, _PLAIN):
        raise UnsafePickleError(f"refused: it holds a {type(obj).__name__}")
    if isinstance(obj, list):
        for x in obj:
            _check_plain(x, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)


def load_plain_pickle(path: Path) -> Any:
    """Load a pickle that may only hold lists, dicts, strings and numbers (LLMVAD's outputs).

    Never calls ``pickle.load``: anything needing a class or function (``os.system``, numpy, ...) is
    refused with :class:`UnsafePickleError` before it is built.
    """
    data = Path(path).read_bytes()
    if len(data) > MAX_PICKLE_BYTES:
        raise UnsafePickleError(f"refused: {len(data)} bytes is larger than {MAX_PICKLE_BYTES}")
    try:
        obj = _PlainUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise UnsafePickleError(f"not a readable pickle: {exc}") from None
    _check_plain(obj)
    return obj


def write_llmvad_pickles(
    out_dir: Path, stem: str, descriptions: Sequence[str], summaries: Sequence[str], scores: Sequence[float]
) -> list[Path]:
    """``<stem>_frame_descriptions.pkl``, ``_chunked_summaries.pkl`` and ``_anomaly_scores.pkl``, as LLMVAD
    wrote them: plain lists of strings and floats (protocol 4)."""
    paths = []
    for suffix, value in (
        ("frame_descriptions", [str(d) for d in descriptions]),
        ("chunked_summaries", [str(s) for s in summaries]),
        ("anomaly_scores", [float(x) for x in scores]),
    ):
        path = out_dir / f"{stem}_{suffix}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=4))
        paths.append(path)
    return paths
