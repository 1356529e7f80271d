"""PNG plots of a video's anomaly score over time (matplotlib's object API: no pyplot state, so plots
may be drawn from several threads at once)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_scores(
    path: Path,
    *,
    title: str,
    end_times: Sequence[float],
    scores: Sequence[float],
    duration: float,
    threshold: float,
    events: Sequence[tuple[float, float]] = (),
    truth: Sequence[tuple[float, float]] = (),
    xlabel: str = "time in video (s)",
) -> Path:
    """Score over the video's time, held until the next window (as a live monitor sees it), with the
    threshold, the monitor's events and the ground truth shaded."""
    fig = Figure(figsize=(10, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (a, b) in enumerate(truth):
        ax.axvspan(a, b, color="tab:orange", alpha=0.25, lw=0, label="ground truth" if i == 0 else None)
    for i, (a, b) in enumerate(events):
        ax.axvspan(a, b, color="tab:red", alpha=0.18, lw=0, label="event" if i == 0 else None)
    if end_times:
        xs = [*end_times, max(duration, end_times[-1])]
        ys = [*scores, scores[-1]]
        ax.step(xs, ys, where="post", color="tab:blue", lw=1.6, label="anomaly score")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path)
    return path
