"""``monitor eval``: frame-level figures of a batch run against UCF-Crime or XD-Violence annotations."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.offline.annotations import Format, VideoTruth, truth_for
from monitor.offline.llmvad_compat import UnsafePickleError, load_plain_pickle
from monitor.offline.ranking import average_precision, pr_auc_trapezoid, roc_auc
from pipeline.alerts import AlertMachine
from pipeline.records import WindowScore
from pipeline.rules import Rule

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScoredVideo:
    """A video's window scores on its own clock (seconds)."""

    key: str
    duration: float
    start_times: npt.NDArray[np.float64]
    end_times: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]


def load_results(
    scores_dir: Path, *, every_n_frames: int = 10, size: int = 3, stride: int = 2, llmvad_fps: float = 30.0
) -> dict[str, ScoredVideo]:
    """The batch outputs under ``scores_dir`` (``<video>.json``) and LLMVAD's ``*_anomaly_scores.pkl`` (read with
    the restricted unpickler; their windows are placed by ``every_n_frames``, ``size``, ``stride`` and
    ``llmvad_fps``, as LLMVAD made them)."""
    out: dict[str, ScoredVideo] = {}
    for path in sorted(scores_dir.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not data.get("complete") or "windows" not in data:
            continue
        w = data["windows"]
        out[path.stem] = ScoredVideo(
            path.stem,
            float(data.get("duration") or 0.0),
            np.array([x["start_time"] for x in w], dtype=np.float64),
            np.array([x["end_time"] for x in w], dtype=np.float64),
            np.array([x["score"] for x in w], dtype=np.float64),
        )
    for path in sorted(scores_dir.rglob("*_anomaly_scores.pkl")):
        key = path.name[: -len("_anomaly_scores.pkl")]
        if key in out:
            continue
        try:
            scores = load_plain_pickle(path)
        except UnsafePickleError as exc:
            log.error("%s: %s", path, exc)
            continue
        if not isinstance(scores, list) or not all(isinstance(x, int | float) for x in scores):
            log.error("%s: not a list of numbers", path)
            continue
        first = np.arange(len(scores)) * stride * every_n_frames
        last = first + (size - 1) * every_n_frames
        out[key] = ScoredVideo(
            key,
            float((last[-1] + every_n_frames) / llmvad_fps) if scores else 0.0,
            first / llmvad_fps,
            last / llmvad_fps,
            np.asarray(scores, dtype=np.float64),
        )
    return out


def frame_scores(v: ScoredVideo, fps: float) -> npt.NDArray[np.float64]:
    """One score per frame at ``fps``: each window's score holds from its end until the next window ends
    (causal: no look-ahead); frames before the first judgement score 0."""
    n = max(1, round(v.duration * fps))
    t = np.arange(n) / fps
    idx = np.searchsorted(v.end_times, t, side="right") - 1
    return np.where(idx >= 0, v.scores[np.clip(idx, 0, None)] if len(v.scores) else 0.0, 0.0)


def frame_labels(truth: VideoTruth, n: int) -> npt.NDArray[np.bool_]:
    y = np.zeros(n, dtype=bool)
    for a, b in truth.intervals:
        y[max(0, a) : min(n, b + 1)] = True
    return y


def replay_alerts(v: ScoredVideo, rule: Rule) -> list[tuple[float, float, float]]:
    """The alerts the monitor raises on these scores: (time raised, start, end) per event."""
    machine = AlertMachine(v.key, rule, id_factory=lambda _t: "e")
    out: list[list[float]] = []
    for i, (a, b, s) in enumerate(zip(v.start_times, v.end_times, v.scores, strict=True)):
        for change in machine.update(WindowScore(v.key, i, float(a), float(b), float(b), float(s), (), (i,))):
            if change.type == "new":
                out.append([float(b), change.after.start_time, v.duration])
            elif change.type == "end" and out:
                out[-1][2] = float(b)
    return [(r, s, e) for r, s, e in out]


@dataclass
class ClassRow:
    name: str
    videos: int
    anomalous: int
    roc_auc: float | None
    ap: float | None
    ap_trapezoid: float | None


def _figures(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64]) -> tuple[float | None, float | None, float | None]:
    if y.all() or not y.any():
        return None, None, None
    return roc_auc(y, s), average_precision(y, s), pr_auc_trapezoid(y, s)


def evaluate(scored: dict[str, ScoredVideo], truths: dict[str, VideoTruth], fmt: Format, rule: Rule) -> dict[str, Any]:
    """All figures (see the README): pooled frame-level ROC-AUC and both APs, per class, mean within-video
    AUC, false alarms per hour of normal footage and detection delay."""
    fps = next(iter(truths.values())).fps if truths else (30.0 if fmt == "ucf-crime" else 24.0)
    per_video: dict[str, tuple[VideoTruth, npt.NDArray[np.bool_], npt.NDArray[np.float64]]] = {}
    skipped = []
    for key, v in scored.items():
        truth = truth_for(key, truths, fmt)
        if truth is None:
            skipped.append(key)
            continue
        s = frame_scores(v, fps)
        per_video[key] = (truth, frame_labels(truth, len(s)), s)
    if not per_video:
        raise ValueError("no scored video is in the annotations")
    missing = sorted(k for k, t in truths.items() if k not in scored)
    y = np.concatenate([p[1] for p in per_video.values()])
    s = np.concatenate([p[2] for p in per_video.values()])
    auc, ap, ap_t = _figures(y, s)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key, (truth, _, _) in per_video.items():
        by_class[truth.category if truth.anomalous else "Normal"].append(key)
    normal = by_class.get("Normal", [])
    rows = []
    for name in sorted(c for c in by_class if c != "Normal"):
        keys = by_class[name] + normal
        f = _figures(np.concatenate([per_video[k][1] for k in keys]), np.concatenate([per_video[k][2] for k in keys]))
        rows.append(ClassRow(name, len(by_class[name]), len(by_class[name]), *f))
    within = [roc_auc(yv, sv) for _, yv, sv in per_video.values() if yv.any() and not yv.all()]
    # alerts: false alarms and detection delay at the configured threshold
    false_alarms, normal_seconds, delays, intervals = 0, 0.0, [], 0
    for key, (truth, yv, _) in per_video.items():
        raised = replay_alerts(scored[key], rule)
        spans = truth.seconds()
        normal_seconds += float((~yv).sum()) / fps
        for _, start, end in raised:
            if not any(start <= b and end >= a for a, b in spans):
                false_alarms += 1
        for a, b in spans:
            intervals += 1
            hits = [r for r, st, en in raised if a <= r <= b or (r < a <= en)]
            if hits:
                delays.append(max(0.0, min(hits) - a))
    hours = normal_seconds / 3600
    return {
        "format": fmt,
        "fps": fps,
        "videos": len(per_video),
        "anomalous_videos": sum(t.anomalous for t, _, _ in per_video.values()),
        "frames": int(y.size),
        "roc_auc": auc,
        "ap": ap,
        "ap_trapezoid": ap_t,
        "classes": [row.__dict__ for row in rows],
        "mean_within_video_auc": float(np.mean(within)) if within else None,
        "within_video_count": len(within),
        "threshold": rule.threshold,
        "false_alarms": false_alarms,
        "normal_hours": hours,
        "false_alarms_per_hour": false_alarms / hours if hours > 0 else None,
        "anomalies": intervals,
        "detected": len(delays),
        "delay_median_s": float(np.median(delays)) if delays else None,
        "delay_mean_s": float(np.mean(delays)) if delays else None,
        "skipped_not_annotated": sorted(skipped),
        "missing_scores": missing,
    }


def render(r: dict[str, Any]) -> str:
    """The per-class table and the overall figures, as printed by ``monitor eval``."""

    def f(x: float | None, d: int = 4) -> str:
        return "-" if x is None else f"{x:.{d}f}"

    lines = [f"{'class':<16} {'videos':>6} {'roc_auc':>8} {'ap':>8} {'ap_trapz':>8}"]
    for row in r["classes"]:
        lines.append(
            f"{row['name']:<16} {row['videos']:>6} {f(row['roc_auc']):>8} {f(row['ap']):>8} {f(row['ap_trapezoid']):>8}"
        )
    lines.append(f"{'overall':<16} {r['videos']:>6} {f(r['roc_auc']):>8} {f(r['ap']):>8} {f(r['ap_trapezoid']):>8}")
    lines += [
        f"frames: {r['frames']} at {r['fps']:g} fps, {r['anomalous_videos']} anomalous of {r['videos']} videos",
        "ap = step-wise average precision (scikit-learn); ap_trapz = auc(recall, precision), as XD-Violence publishes",
        f"mean within-video roc_auc over {r['within_video_count']} anomalous videos: {f(r['mean_within_video_auc'])}",
        f"false alarms at threshold {r['threshold']:g}: {r['false_alarms']} in {r['normal_hours']:.2f} h of normal "
        f"footage = {f(r['false_alarms_per_hour'], 2)} per hour",
        f"detected {r['detected']} of {r['anomalies']} anomalies; delay median {f(r['delay_median_s'], 1)} s, "
        f"mean {f(r['delay_mean_s'], 1)} s",
    ]
    if r["missing_scores"]:
        lines.append(f"warning: {len(r['missing_scores'])} annotated videos have no scores")
    if r["skipped_not_annotated"]:
        lines.append(f"note: {len(r['skipped_not_annotated'])} scored videos are not in the annotations")
    return "\n".join(lines)
