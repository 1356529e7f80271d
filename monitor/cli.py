"""The ``monitor`` command line: it parses arguments and calls one function per command."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor.config import ConfigError
from monitor.config.app_config import INSTANCE_PATTERN
from monitor.env import load_env_file
from monitor.options import DEFAULT_CONFIG, EXIT_FAILED, EXIT_GRACE_S, EXIT_INTERRUPTED, EXIT_USAGE, fail, out_within
from pipeline.inference import ModelLoadError
from pipeline.locations import shown

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
MAX_SECONDS = 366 * 86400.0
"""The longest --max-seconds: nan, inf and 1e308 are mistakes, not limits."""
Command = Callable[[argparse.Namespace], int]


def _run(args: argparse.Namespace) -> int:
    from monitor.live.commands import run

    return run(
        config=args.config,
        sources=args.source,
        model=args.model,
        judge_model=args.judge_model,
        output=args.output,
        max_seconds=args.max_seconds,
        log_level=args.log_level,
        shard=args.shard,
        cameras=args.cameras,
        instance=args.instance,
        console=args.console,
        span_s=args.span,
        hours=args.hours,
        as_program=args.as_program,
    )


def _console(args: argparse.Namespace) -> int:
    from monitor.console.commands import console

    return console(
        broker=args.broker,
        prefix=args.prefix,
        config=args.config,
        threshold=args.threshold,
        span_s=args.span,
        history=args.history,
        hours=args.hours,
        ca_file=args.ca_file,
        log_level=args.log_level,
        instance=args.instance,
    )


def _check_config(args: argparse.Namespace) -> int:
    from monitor.live.commands import check_config

    return check_config(Path(args.path))


def _events(args: argparse.Namespace) -> int:
    from monitor.live.commands import events

    return events(
        config=args.config,
        db=args.db,
        camera=args.camera,
        since=args.since,
        until=args.until,
        fmt=args.format,
        instance=args.instance,
    )


def _summarize(args: argparse.Namespace) -> int:
    from monitor.live.commands import summarize

    return summarize(
        config=args.config,
        db=args.db,
        camera=args.camera,
        since=args.since,
        until=args.until,
        fmt=args.format,
        output=args.output,
        judge_model=args.judge_model,
        instance=args.instance,
        log_level=args.log_level,
    )


def _event_show(args: argparse.Namespace) -> int:
    from monitor.live.commands import event_show

    return event_show(
        config=args.config, db=args.db, event_id=args.id, snapshot=args.snapshot, clip=args.clip, instance=args.instance
    )


def _forget_instance(args: argparse.Namespace) -> int:
    from monitor.live.commands import forget_instance

    return forget_instance(config=args.config, instance=args.instance, dry_run=args.dry_run)


def _batch(args: argparse.Namespace) -> int:
    from monitor.offline.commands import batch

    return batch(
        video_dir=args.video_dir,
        output=args.output,
        config=args.config,
        model=args.model,
        judge_model=args.judge_model,
        parallel=args.parallel,
        pickle=args.pickle,
        annotations=args.annotations,
        fmt=args.format,
        log_level=args.log_level,
    )


def _eval(args: argparse.Namespace) -> int:
    from monitor.offline.commands import evaluate

    return evaluate(
        scores=args.scores,
        annotations=args.annotations,
        fmt=args.format,
        config=args.config,
        output=args.output,
        llmvad_fps=args.llmvad_fps,
        log_level=args.log_level,
    )


def _report(args: argparse.Namespace) -> int:
    from monitor.offline.commands import report_page

    return report_page(run_dir=args.dir, output=args.output, config=args.config)


def _eval_judge(args: argparse.Namespace) -> int:
    from monitor.offline.commands import eval_judge

    return eval_judge(
        file=args.file,
        config=args.config,
        judge_model=args.judge_model,
        window=args.window,
        stride=args.stride,
        batch_size=args.batch_size,
        raw=args.raw,
        log_level=args.log_level,
    )


def _calibrate_judge(args: argparse.Namespace) -> int:
    from monitor.offline.commands import calibrate_judge

    return calibrate_judge(
        file=args.file,
        config=args.config,
        judge_model=args.judge_model,
        layers=args.layers,
        window=args.window,
        stride=args.stride,
        l2=args.l2,
        folds=args.folds,
        batch_size=args.batch_size,
        output=args.output,
        log_level=args.log_level,
        video_labels=args.video_labels,
        top_share=args.top_share,
    )


def _layers(text: str) -> tuple[int, ...]:
    """``--layers``: comma-separated layer numbers."""
    try:
        layers = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated layer numbers: {text!r}") from None
    if not layers or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"not comma-separated layer numbers: {text!r}")
    return tuple(dict.fromkeys(layers))


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, func: Command, help: str
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description="Real-time video anomaly monitor (Gemma 3).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cfg_help = "configuration file (default: ./config.toml if present)"

    run = _command(sub, "run", _run, "run the pipeline on cameras or files")
    run.epilog = (
        "Results (results.jsonl, snapshots/) go to a new folder per run under STATE/runs/ (latest points at the "
        "newest; STATE: $LLMVAD_STATE_DIR, else $XDG_STATE_HOME/llmvad, else ~/.local/state/llmvad), the event "
        "history to STATE/<instance>/events.sqlite; [outputs] dir and [store] path move them. After the run "
        "it prints where they are and the commands that show them."
    )
    run.add_argument("--config", type=Path, help=cfg_help)
    run.add_argument("--source", action="append", metavar="URL_OR_PATH", help="replaces the configured cameras")
    run.add_argument("--model", metavar="ID_OR_DIR", help="vision-language model (hub id or local directory)")
    run.add_argument("--judge-model", metavar="ID_OR_DIR", help="separate text-only judge model")
    run.add_argument("--max-seconds", type=float, metavar="S", help="stop after this many seconds")
    run.add_argument(
        "--output", type=Path, metavar="DIR", help="folder for results.jsonl and snapshots (default below)"
    )
    run.add_argument("--shard", metavar="I/N", help="run the Ith of N shares of the cameras (sorted by name)")
    run.add_argument("--cameras", metavar="NAME,...", help="run only these configured cameras")
    run.add_argument("--console", action="store_true", help="open the operator console over this pipeline")
    run.add_argument("--span", type=float, default=300.0, metavar="S", help="console: seconds shown (default 300)")
    run.add_argument("--hours", type=float, default=1.0, metavar="H", help="console: hours of history to load")

    con = _command(sub, "console", _console, "the operator console, as an MQTT subscriber")
    con.add_argument("--broker", metavar="URL", help="mqtt://[user:pass@]host:port or mqtts://… (default: [mqtt])")
    con.add_argument("--prefix", metavar="P", help="topic prefix (default: [mqtt] topic_prefix, llmvad)")
    con.add_argument("--config", type=Path, help="configuration file (broker, topic prefix, history)")
    con.add_argument(
        "--threshold",
        type=float,
        help="anomaly threshold line until the monitor publishes its own (retained, per camera and rule)",
    )
    con.add_argument("--span", type=float, default=300.0, metavar="S", help="seconds shown (default 300)")
    con.add_argument("--history", type=Path, metavar="FILE", help="event store to load history from")
    con.add_argument("--hours", type=float, default=1.0, metavar="H", help="hours of history to load (default 1)")
    con.add_argument("--ca-file", metavar="PEM", help="CA for mqtts:// (default: the system's)")

    check = _command(sub, "check-config", _check_config, "validate a configuration file and exit")
    check.add_argument("path", nargs="?", default=str(DEFAULT_CONFIG), metavar="PATH")

    events = _command(sub, "events", _events, "list events from the history (or: events show ID)")
    events.add_argument("--config", type=Path, help="configuration file (where the history is)")
    events.add_argument("--db", type=Path, metavar="PATH", help="the history file (default: [store] path)")
    events.add_argument("--camera", metavar="C", help="one camera (default: all)")
    events.add_argument("--since", metavar="T", help="e.g. 2h, 7d, 2026-11-25T08:00 or a Unix time")
    events.add_argument("--until", metavar="T", help="as --since (default: now)")
    events.add_argument("--format", choices=["table", "json", "csv"], default="table")
    show = _command(events.add_subparsers(dest="events_command", metavar="show"), "show", _event_show, "one event")
    show.add_argument("id", help="event id (or a unique prefix)")
    show.add_argument("--snapshot", type=Path, metavar="FILE", help="where to write the JPEG (default: ./<id>.jpg)")
    show.add_argument("--clip", type=Path, metavar="FILE", help="copy the event's video clip there")
    show.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    show.add_argument("--db", type=Path, metavar="PATH", default=argparse.SUPPRESS)
    show.add_argument("--instance", metavar="NAME", default=argparse.SUPPRESS)

    batch = _command(sub, "batch", _batch, "process every video in a folder (recursively)")
    batch.add_argument("video_dir", type=Path, metavar="VIDEO_DIR")
    batch.add_argument("--output", type=Path, metavar="DIR", help="outputs (default: VIDEO_DIR-results beside it)")
    batch.add_argument("--config", type=Path, help=cfg_help)
    batch.add_argument("--model", metavar="ID_OR_DIR")
    batch.add_argument("--judge-model", metavar="ID_OR_DIR")
    batch.add_argument("--parallel", type=int, default=4, metavar="N", help="videos decoded at once (default 4)")
    batch.add_argument("--pickle", action="store_true", help="also write LLMVAD's three pickles per video")
    batch.add_argument("--annotations", type=Path, metavar="FILE", help="ground truth to shade in the plots")
    batch.add_argument("--format", choices=["ucf-crime", "xd-violence"], default="ucf-crime")

    evl = _command(sub, "eval", _eval, "frame-level ROC-AUC/AP of a batch run against benchmark annotations")
    evl.add_argument("--scores", type=Path, required=True, metavar="DIR", help="a batch output folder or pickles")
    evl.add_argument("--annotations", type=Path, required=True, metavar="FILE")
    evl.add_argument("--format", choices=["ucf-crime", "xd-violence"], required=True)
    evl.add_argument("--config", type=Path, help="threshold and alert settings (default: ./config.toml)")
    evl.add_argument("--output", type=Path, metavar="FILE", help="figures as JSON (default: DIR/eval_FORMAT.json)")
    evl.add_argument("--llmvad-fps", type=float, default=30.0, help="frame rate behind LLMVAD pickles (default 30)")

    rep = _command(sub, "report", _report, "one self-contained HTML page of a run's folder or a batch run")
    rep.add_argument(
        "dir",
        type=Path,
        metavar="DIR",
        nargs="?",
        help="a run's results or a batch's outputs (default: the latest run)",
    )
    rep.add_argument("--config", type=Path, help="configuration file (where runs go, the threshold drawn)")
    rep.add_argument("--output", type=Path, metavar="FILE", help="default: DIR/report.html")

    fgt = _command(
        sub, "forget-instance", _forget_instance, "clear what a renamed or retired instance left on the MQTT broker"
    )
    fgt.add_argument("instance", metavar="NAME", help="the instance's name (its availability topic says it)")
    fgt.add_argument("--config", type=Path, help="configuration file (the broker: [mqtt])")
    fgt.add_argument("--dry-run", action="store_true", help="list what would be cleared, clear nothing")

    summ = _command(sub, "summarize", _summarize, "what happened in a period: events and the model's summary")
    summ.add_argument("--config", type=Path, help="configuration file (the history and the model)")
    summ.add_argument("--db", type=Path, metavar="PATH", help="the history file (default: [store] path)")
    summ.add_argument("--camera", metavar="C", help="one camera (default: all)")
    summ.add_argument("--since", metavar="T", default="24h", help="e.g. 8h, 2026-11-25T08:00 (default: 24h)")
    summ.add_argument("--until", metavar="T", help="default: now")
    summ.add_argument("--format", choices=["text", "markdown", "html"], default="text")
    summ.add_argument("--output", type=Path, metavar="FILE", help="write there (default: standard output)")
    summ.add_argument("--judge-model", metavar="ID_OR_DIR", help="the model that writes (default: the judge)")

    cal = _command(sub, "calibrate-judge", _calibrate_judge, "fit a hidden-state probe of the judge")
    cal.add_argument(
        "file",
        type=Path,
        metavar="FILE.jsonl|DIR",
        help="lines of video, start, text, label; or the `monitor batch` results of clips kept in normal/ and "
        "other folders (with --video-labels)",
    )
    cal.add_argument(
        "--layers",
        type=_layers,
        default=(5, 6, 7, 8),
        metavar="N,N",
        help="hidden layers whose mean the probe reads (default 5,6,7,8)",
    )
    cal.add_argument(
        "--l2", type=float, help="ridge penalty of the probe (default 100; with --video-labels 10, chosen on UCA Val)"
    )
    cal.add_argument(
        "--video-labels",
        action="store_true",
        help="each line's label is its video's (an anomalous video also shows normal moments): fit by "
        "multiple-instance learning",
    )
    cal.add_argument(
        "--top-share",
        type=float,
        default=0.5,
        metavar="Q",
        help="--video-labels: share of an anomalous video's descriptions taken as its anomalies (default 0.5, "
        "chosen on UCA Val)",
    )
    cal.add_argument("--folds", type=int, default=5, help="cross-validation folds across videos (default 5)")
    cal.add_argument("--output", type=Path, default=Path("judge-calibration.json"), metavar="FILE")

    ev = _command(sub, "eval-judge", _eval_judge, "score labelled descriptions; print ROC-AUC and AP")
    ev.add_argument("file", type=Path, metavar="FILE.jsonl")
    ev.add_argument("--raw", action="store_true", help="the prompted score alone: no calibration, no smoothing")
    for p in (cal, ev):
        p.add_argument("--config", type=Path, help="configuration file (judge model and prompt)")
        p.add_argument("--judge-model", metavar="ID_OR_DIR", help="judge model (default: the configured judge)")
        p.add_argument("--window", type=int, metavar="N", help="texts per window (default: [windows] size)")
        p.add_argument("--stride", type=int, metavar="S", help="new texts between windows (default: [windows] stride)")
        p.add_argument("--batch-size", type=int, default=8, metavar="B")
    for p in (run, con, batch, evl, cal, ev, summ):
        p.add_argument("--log-level", choices=LEVELS)
    for p in (run, con, events, summ):
        p.add_argument(
            "--instance",
            metavar="NAME",
            help="the monitor instance's name (run: default derived from host and cameras; history commands: "
            "default the configured one, else the history written last)",
        )
    return parser


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments argparse cannot check, or None."""
    if min(getattr(args, k, 1) for k in ("batch_size", "parallel")) < 1 or any(
        getattr(args, k, None) is not None and getattr(args, k) < 1 for k in ("window", "stride")
    ):
        return "--window, --stride, --batch-size and --parallel must be at least 1"
    limit = getattr(args, "max_seconds", None)
    if limit is not None and not 0 < limit <= MAX_SECONDS:
        return f"--max-seconds {limit}: give a number of seconds above 0 and at most {MAX_SECONDS:.0f} (a year)"
    instance = getattr(args, "instance", None)
    if instance is not None and not re.fullmatch(INSTANCE_PATTERN, instance):
        return f"--instance {instance!r}: a name of 1 to 64 letters, digits, _ and - (it goes into MQTT topics)"
    return None


def main(argv: Sequence[str] | None = None, *, as_program: bool = False) -> int:
    """The ``monitor`` command line. ``as_program``: this is the process's own command (:func:`program`),
    which may end the process at once rather than wait for a thread a stopped run left busy."""
    from monitor.offline.judge_eval import DataError

    args = build_parser().parse_args(argv)
    args.as_program = as_program
    if (problem := _argument_problem(args)) is not None:
        return fail(problem)
    load_env_file(Path(".env"))
    os.umask(0o077)  # what the monitor writes (history, outbox, snapshots, results) is its owner's alone
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        for key, msg in exc.problems:
            print(f"error: {exc.source}: {key + ': ' if key else ''}{msg}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelLoadError, DataError) as exc:
        return fail(str(exc))
    except OSError as exc:  # a file the command had to read or write, the cause said, the path kept short
        name = f": {shown(os.fsdecode(exc.filename))}" if exc.filename is not None else ""
        return fail(f"{exc.strerror or exc}{name}", EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, and the traceback in the log at DEBUG
        logging.getLogger("monitor").debug("unexpected error", exc_info=exc)
        return fail(f"unexpected {type(exc).__name__}: {exc} (a bug; --log-level DEBUG shows where)", EXIT_FAILED)


def program() -> None:
    """The ``monitor`` program: :func:`main`, then out within EXIT_GRACE_S even if a thread it left holds
    up the interpreter's exit."""
    code = main(as_program=True)
    out_within(EXIT_GRACE_S, code)
    sys.exit(code)


if __name__ == "__main__":
    program()
