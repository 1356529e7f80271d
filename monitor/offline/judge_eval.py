"""``monitor eval-judge``: score labelled descriptions with the judge and report ROC-AUC and AP."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from monitor.offline.ranking import average_precision, roc_auc
from pipeline.calibration import layer_mean
from pipeline.inference import ModelClient, ModelUnavailable
from pipeline.judge import Calibration, Judge, Smoother, probe_request
from pipeline.rules import Rule
from pipeline.windows import SlidingWindows, WindowSettings

T = TypeVar("T")
log = logging.getLogger(__name__)

WINDOW_TRIES = 4
"""How often a window is asked of a model that did not answer (1, 2 and 4 s apart) before it counts as failed."""


class DataError(Exception):
    """A labelled file is unusable; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Labelled:
    """One labelled description."""

    video: str
    start: float
    end: float
    text: str
    label: int
    category: str = ""


NORMAL_FOLDER = "normal"
"""In a folder of labelled clips, the clips under this folder (any case) are the normal ones."""


def read_batch_labelled(folder: Path) -> list[Labelled]:
    """The descriptions ``monitor batch`` wrote for a folder of clips kept in ``normal/`` and other folders
    (``incident/``, ``theft/``...), each labelled with its video's label: 0 under ``normal/``, else 1."""
    items: list[Labelled] = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if not (isinstance(data, dict) and data.get("complete") and isinstance(data.get("descriptions"), list)):
            continue  # batch_summary.json, eval figures, an unfinished video
        video = Path(str(data["video"]))
        if len(video.parts) < 2:
            raise DataError(f"{path}: video {video} is in no folder: keep the clips in {NORMAL_FOLDER}/ and others")
        label = 0 if video.parts[0].lower() == NORMAL_FOLDER else 1
        for d in data["descriptions"]:
            t = float(d.get("time", 0.0))
            items.append(Labelled(str(video), t, t, str(d.get("text", "")), label, video.parts[0]))
    if not items:
        raise DataError(f"{folder}: no video results of `monitor batch` in it")
    return items


def read_labelled(path: Path) -> list[Labelled]:
    """Read a JSON-lines file of ``video``, ``start``, ``end``, ``text``, ``label`` (and ``category``)."""
    items: list[Labelled] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            label = obj["label"]
            if label not in (0, 1) or isinstance(label, bool):
                raise ValueError(f"label must be 0 or 1, got {label!r}")
            if not isinstance(obj["text"], str):
                raise ValueError("text must be a string")
            start = float(obj.get("start", 0.0))
            end = float(obj.get("end", start))
            if not (math.isfinite(start) and math.isfinite(end)):
                raise ValueError("start and end must be finite numbers")
            items.append(Labelled(str(obj["video"]), start, end, obj["text"], int(label), str(obj.get("category", ""))))
        except KeyError as exc:
            raise DataError(f"{path}:{n}: missing field {exc.args[0]!r}") from None
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}:{n}: {exc}") from None
    if not items:
        raise DataError(f"{path}: no labelled lines")
    return items


def window_texts(items: Sequence[Labelled], window: int) -> list[tuple[str, ...]]:
    """For each item (in input order), its text preceded by up to ``window - 1`` earlier texts of its video."""
    if window < 1:
        raise ValueError("window must be at least 1")
    out: list[tuple[str, ...]] = [()] * len(items)
    for idxs in _by_video(items).values():
        for pos, i in enumerate(idxs):
            out[i] = tuple(items[j].text for j in idxs[max(0, pos - window + 1) : pos + 1])
    return out


def _by_video(items: Sequence[Labelled]) -> dict[str, list[int]]:
    """Each video's item indices in time order."""
    by_video: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_video[it.video].append(i)
    for idxs in by_video.values():
        idxs.sort(key=lambda i: (items[i].start, items[i].end))
    return by_video


@dataclass(frozen=True, slots=True)
class LiveWindows:
    """The windows the live monitor would judge over each video's descriptions (``[windows]`` size and
    stride, the tail flushed as at the end of a file), and for each item the first window holding it:
    the window whose score the monitor would first show for that moment."""

    windows: list[tuple[int, ...]]
    """Item indices of each window, oldest first; a video's windows are consecutive and in time order."""
    videos: list[str]
    first: npt.NDArray[np.int64]

    def texts(self, items: Sequence[Labelled]) -> list[tuple[str, ...]]:
        return [tuple(items[i].text for i in w) for w in self.windows]

    def per_item(self, window_scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Window scores spread back to the items (each item gets its first window's)."""
        return np.asarray(window_scores[self.first], dtype=np.float64)


def live_windows(items: Sequence[Labelled], settings: WindowSettings) -> LiveWindows:
    """The windows of :class:`~pipeline.windows.SlidingWindows` over each video, as the monitor makes them."""
    windows: list[tuple[int, ...]] = []
    videos: list[str] = []
    first = np.full(len(items), -1, dtype=np.int64)
    for video, idxs in _by_video(items).items():
        sliding = SlidingWindows[int](settings)
        emitted = [w for w in (sliding.add(i) for i in idxs) if w is not None]
        tail = sliding.flush()
        for w in [*emitted, *([tail] if tail is not None else [])]:
            for i in w:
                if first[i] < 0:
                    first[i] = len(windows)
            windows.append(w)
            videos.append(video)
    return LiveWindows(windows, videos, first)


async def _each(
    windows: Sequence[Sequence[str]],
    one: Callable[[Sequence[str]], Awaitable[T]],
    progress: Callable[[int], None] | None,
    max_inflight: int,
) -> list[T]:
    """``one`` of every window, at most ``max_inflight`` at a time; all go out together, so the client batches."""
    slots = asyncio.Semaphore(max_inflight)

    async def bounded(texts: Sequence[str]) -> T:
        async with slots:
            out = await one(texts)
        if progress is not None:
            progress(1)
        return out

    return list(await asyncio.gather(*(bounded(w) for w in windows)))


async def score_windows(
    models: ModelClient,
    rule: Rule,
    windows: Sequence[Sequence[str]],
    *,
    context: str | None = None,
    calibration: Calibration | None = None,
    progress: Callable[[int], None] | None = None,
    max_inflight: int = 256,
) -> npt.NDArray[np.float64]:
    """The rule's score for every window of texts, as the live monitor's :class:`Judge` gives it (with
    ``calibration``, loaded from the rule's calibration file, when given). A window the model did not
    answer (a server down or too loaded, :data:`WINDOW_TRIES` times) is NaN; the others go on."""
    if calibration is not None and rule.calibration is None:
        raise ValueError(f"rule {rule.name!r} names no calibration file")
    calibrations = {} if calibration is None or rule.calibration is None else {rule.calibration: calibration}
    judge = Judge(models, cache_size=0, calibrations=calibrations)

    async def one(texts: Sequence[str]) -> float:
        for attempt in range(WINDOW_TRIES):
            try:
                return (await judge.score(rule, texts, context)).score
            except ModelUnavailable as exc:  # a loaded or restarting server: again, a little later
                if attempt == WINDOW_TRIES - 1:
                    log.warning("a window was not judged after %d tries: %s", WINDOW_TRIES, exc)
                    return float("nan")
                await asyncio.sleep(2.0**attempt)
        raise AssertionError("unreachable")

    return np.asarray(await _each(windows, one, progress, max_inflight), dtype=np.float64)


async def probe_features(
    models: ModelClient,
    template: str,
    layers: Sequence[int],
    windows: Sequence[Sequence[str]],
    *,
    context: str | None = None,
    progress: Callable[[int], None] | None = None,
    max_inflight: int = 256,
) -> npt.NDArray[np.float64]:
    """For every window, the hidden states of the probe text ``template`` (mean-pooled over its tokens,
    averaged over ``layers``): what a calibration's probe reads."""

    async def one(texts: Sequence[str]) -> npt.NDArray[np.float64]:
        result = await models.score(probe_request(template, layers, texts, context))
        return layer_mean(result.pooled, layers)

    return np.stack(await _each(windows, one, progress, max_inflight))


def smooth_by_video(
    items: Sequence[Labelled], scores: npt.NDArray[np.float64], alpha: float
) -> npt.NDArray[np.float64]:
    """Each video's scores through the live monitor's causal moving average, in time order."""
    out = scores.copy()
    for idxs in _by_video(items).values():
        smoother = Smoother(alpha)
        for i in idxs:
            out[i] = smoother.update(float(scores[i]))
    return out


def smooth_windows(live: LiveWindows, scores: npt.NDArray[np.float64], alpha: float) -> npt.NDArray[np.float64]:
    """Window scores through the live monitor's causal moving average, each video's windows in order."""
    out = scores.copy()
    smoother, video = Smoother(alpha), None
    for k, v in enumerate(live.videos):
        if v != video:
            smoother, video = Smoother(alpha), v
        if not math.isnan(scores[k]):  # a window not judged stays so, and does not spoil the next ones
            out[k] = smoother.update(float(scores[k]))
    return out


@dataclass(frozen=True, slots=True)
class JudgeReport:
    """Figures of one evaluation."""

    n: int
    roc_auc: float
    ap: float
    auc_vs_normal_videos: float | None
    auc_vs_anomalous_videos: float | None

    def lines(self) -> list[str]:
        out = []
        if self.auc_vs_normal_videos is not None:
            out.append(f"roc_auc anomalous segments vs normal videos: {self.auc_vs_normal_videos:.4f}")
        if self.auc_vs_anomalous_videos is not None:
            out.append(
                f"roc_auc anomalous segments vs normal segments of anomalous videos: {self.auc_vs_anomalous_videos:.4f}"
            )
        out.append(f"roc_auc={self.roc_auc:.4f} ap={self.ap:.4f} n={self.n}")
        return out


def report(items: Sequence[Labelled], scores: npt.NDArray[np.float64]) -> JudgeReport:
    """Overall ROC-AUC and AP, and AUC against each kind of negative."""
    y = np.array([it.label for it in items], dtype=bool)
    anomalous_videos = {it.video for it in items if it.label == 1}
    neg_in_anom = np.array([it.label == 0 and it.video in anomalous_videos for it in items])
    neg_in_normal = ~y & ~neg_in_anom

    def sub_auc(neg: npt.NDArray[np.bool_]) -> float | None:
        mask = y | neg
        return roc_auc(y[mask], scores[mask]) if neg.any() and y.any() else None

    return JudgeReport(
        n=len(items),
        roc_auc=roc_auc(y, scores),
        ap=average_precision(y, scores),
        auc_vs_normal_videos=sub_auc(neg_in_normal),
        auc_vs_anomalous_videos=sub_auc(neg_in_anom),
    )
