"""Ground truth of public anomaly benchmarks: UCF-Crime and XD-Violence temporal annotations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Format = Literal["ucf-crime", "xd-violence"]
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp")
FPS: dict[str, float] = {"ucf-crime": 30.0, "xd-violence": 24.0}
XD_CLASSES = {
    "A": "Normal",
    "B1": "Fighting",
    "B2": "Shooting",
    "B4": "Riot",
    "B5": "Abuse",
    "B6": "Car accident",
    "G": "Explosion",
}


class AnnotationError(Exception):
    """An annotation file is unusable; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class VideoTruth:
    """The anomalous intervals of one test video, in frames at ``fps``."""

    name: str
    category: str
    intervals: tuple[tuple[int, int], ...]
    fps: float

    @property
    def anomalous(self) -> bool:
        return bool(self.intervals)

    def seconds(self) -> list[tuple[float, float]]:
        return [(a / self.fps, b / self.fps) for a, b in self.intervals]


def video_key(name: str) -> str:
    """The name a video is matched by: its file name without folder and video extension."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    lower = base.lower()
    for suffix in VIDEO_SUFFIXES:
        if lower.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _ints(fields: list[str], path: Path, n: int) -> list[int]:
    try:
        return [int(float(f)) for f in fields]
    except ValueError:
        raise AnnotationError(f"{path}:{n}: frame numbers expected, got {' '.join(fields)!r}") from None


def read_ucf_crime(path: Path) -> dict[str, VideoTruth]:
    """``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``: name, class, start1, end1, start2, end2
    (frames at 30 fps, -1 for none), separated by runs of spaces or tabs."""
    out: dict[str, VideoTruth] = {}
    for n, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise AnnotationError(f"{path}:{n}: expected 6 fields (name class s1 e1 s2 e2), got {len(fields)}")
        s1, e1, s2, e2 = _ints(fields[2:], path, n)
        intervals = tuple((a, b) for a, b in ((s1, e1), (s2, e2)) if a >= 0 and b >= 0)
        if any(b < a for a, b in intervals):
            raise AnnotationError(f"{path}:{n}: an interval ends before it starts")
        out[video_key(fields[0])] = VideoTruth(video_key(fields[0]), fields[1], intervals, FPS["ucf-crime"])
    return out


def read_xd_violence(path: Path) -> dict[str, VideoTruth]:
    """XD-Violence ``annotations.txt``: a name followed by start/end frame pairs at 24 fps. Normal videos
    are not listed; the class is the first code after ``label_`` in the name (B1 fighting, ...)."""
    out: dict[str, VideoTruth] = {}
    for n, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        numbers = _ints(fields[1:], path, n)
        if not numbers or len(numbers) % 2:
            raise AnnotationError(f"{path}:{n}: expected start/end frame pairs after the name")
        intervals = tuple(zip(numbers[::2], numbers[1::2], strict=True))
        if any(b < a for a, b in intervals):
            raise AnnotationError(f"{path}:{n}: an interval ends before it starts")
        key = video_key(fields[0])
        out[key] = VideoTruth(key, xd_class(key), intervals, FPS["xd-violence"])
    return out


def xd_class(name: str) -> str:
    """The XD-Violence class of a video from its name (``..._label_B2-0-0`` -> Shooting)."""
    m = re.search(r"label_([A-Z]\d?)", name)
    return XD_CLASSES.get(m.group(1), m.group(1)) if m else "Normal"


def read_annotations(path: Path, fmt: Format) -> dict[str, VideoTruth]:
    """Read either format (see :func:`read_ucf_crime`, :func:`read_xd_violence`)."""
    return read_ucf_crime(path) if fmt == "ucf-crime" else read_xd_violence(path)


def truth_for(key: str, truths: dict[str, VideoTruth], fmt: Format) -> VideoTruth | None:
    """A video's truth; an unlisted video is normal in XD-Violence and not a test video in UCF-Crime."""
    if key in truths:
        return truths[key]
    if fmt == "xd-violence":
        return VideoTruth(key, "Normal", (), FPS[fmt])
    return None


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read: {exc.strerror}") from None
