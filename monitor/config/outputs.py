"""``[outputs]``: the results folder and how records are buffered and reported."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.settings import Settings, state_dir


class OutputConfig(Settings):
    """Where results go."""

    dir: Path = Field(
        default_factory=lambda: state_dir() / "runs" / "{run}",
        title="Folder for JSON lines and snapshots; {run} in it: a new folder per run, 'latest' beside it",
    )
    keep_runs: int = Field(20, ge=1, le=100_000, title="Run folders kept ({run} in dir): the newest; older go")
    jsonl: bool = Field(True, title="Write results.jsonl: one line per description, score and event change")
    log_descriptions: bool = Field(False, title="Log every description at INFO (scores and events always are)")
    status_interval_s: float = Field(5.0, gt=0, le=3600, title="How often camera status is reported")
    sink_queue_size: int = Field(1000, ge=1, le=1_000_000, title="Records buffered per sink before dropping")
    group_readable: bool = Field(
        False, title="Let the owner's group read what the monitor writes (default: the owner alone)"
    )
    drain_timeout_s: float = Field(
        3.0, ge=0, le=600, title="On stop: how long work in flight (descriptions, scores, explanations) may finish"
    )
