"""The live application's commands: ``monitor run``, ``check-config``, ``events``, ``events show`` and
``summarize``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from monitor.config import AppConfig, ConfigError, load
from monitor.live.history_file import find_history
from monitor.live.monitor import Monitor, RunSummary
from monitor.live.run_folder import start_run_folder
from monitor.live.sinks import build_sinks
from monitor.logs import setup_logging
from monitor.models import build_client
from monitor.options import (
    EXIT_FAILED,
    EXIT_GRACE_S,
    EXIT_INTERRUPTED,
    EXIT_OK,
    configured_secrets,
    exit_now,
    fail,
    file_mode,
    for_instance,
    load_config,
    out_within,
    parse_shard,
    select_cameras,
    with_overrides,
)
from pipeline.locations import file_problem, shown
from pipeline.redaction import redact_url
from sinks.event_store import EventStore

log = logging.getLogger("monitor")


def _readable_files(cfg: AppConfig) -> AppConfig:
    """Report file sources that cannot be read (one line each: why) and leave them out."""
    keep = []
    for cam in cfg.cameras:
        if not cam.is_live and (problem := file_problem(cam.url)):
            log.error("camera %r: %s: %s", cam.name, shown(cam.url), problem)
        else:
            keep.append(cam)
    return cfg.replace(cameras=tuple(keep))


def run(
    *,
    config: Path | None,
    sources: Sequence[str] | None = None,
    model: str | None = None,
    judge_model: str | None = None,
    output: Path | None = None,
    max_seconds: float | None = None,
    log_level: str | None = None,
    shard: str | None = None,
    cameras: str | None = None,
    instance: str | None = None,
    console: bool = False,
    span_s: float = 300.0,
    hours: float = 1.0,
    as_program: bool = False,
) -> int:
    """``monitor run``: this instance's cameras through the models until interrupted, ``max_seconds`` or the
    end of its files. Exit status 0 done, 1 a source could not be read or a part of the monitor failed.
    ``as_program``: the process is this command's, and ends at once when the run left a thread busy."""
    try:
        cfg = with_overrides(load_config(config), model=model, judge_model=judge_model, sources=sources, output=output)
    except ValueError as exc:
        return fail(str(exc))
    setup_logging(log_level or cfg.log_level, configured_secrets(cfg))
    file_mode(cfg)
    if not cfg.cameras:
        return fail("no cameras: add [[cameras]] to the config or pass --source URL_OR_PATH")
    try:
        names = [n.strip() for n in cameras.split(",") if n.strip()] if cameras else None
        cfg = select_cameras(cfg, shard=parse_shard(shard) if shard else None, names=names)
    except ValueError as exc:
        return fail(str(exc))
    cfg = for_instance(cfg, instance)
    log.info("instance %s: cameras %s", cfg.instance, ", ".join(c.name for c in cfg.cameras))
    requested = len(cfg.cameras)
    cfg = _readable_files(cfg)
    missing = requested - len(cfg.cameras)
    if not cfg.cameras:
        return fail("none of the sources can be read")
    try:
        cfg = start_run_folder(cfg)
    except OSError as exc:
        return fail(f"[outputs] dir: cannot make this run's folder: {exc.strerror or exc}: {exc.filename}")
    live = build_sinks(cfg)
    monitor = Monitor(
        cfg, load_models=lambda: build_client(cfg), sinks=live.sinks, max_seconds=max_seconds, mqtt=live.mqtt
    )
    if cfg.prometheus.port is not None:
        from monitor.live.prometheus import MonitorCollector, serve

        serve(MonitorCollector(monitor), cfg.prometheus.port, cfg.prometheus.address)

    def outcome(summary: RunSummary) -> int:
        bad = summary.failed or summary.crashed or missing
        print(next_steps(cfg, config=config, instance=instance), file=sys.stderr)
        return leave(EXIT_FAILED if bad else EXIT_OK, summary, as_program=as_program)

    if console:
        from monitor.console.feed import ConsoleFeed
        from monitor.console.launch import ConsoleSink, run_with_pipeline

        feed = ConsoleFeed()
        monitor.sinks = [*live.sinks, ConsoleSink(feed)]
        history = cfg.store.path if cfg.store.enabled and cfg.store.path.is_file() else None
        summary = run_with_pipeline(monitor.run, feed, span_s=span_s, history=history, hours=hours)
        return outcome(summary)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signame: str) -> None:
            if stop.is_set():
                log.warning("second %s: exiting now", signame)
                os._exit(EXIT_INTERRUPTED)
            log.info("%s received: shutting down", signame)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig.name)
        code = outcome(await monitor.run(stop))
        if as_program:  # the loop's worker threads are joined without a bound at its end
            way_out.append(out_within(EXIT_GRACE_S, code))
        return code

    way_out: list[threading.Timer] = []
    code = asyncio.run(main())
    for timer in way_out:
        timer.cancel()
    return code


def next_steps(cfg: AppConfig, *, config: Path | None, instance: str | None) -> str:
    """Where a run's results are and the commands that show them, as typed in the same folder."""
    opts = "".join(f" {o} {v}" for o, v in (("--config", config), ("--instance", instance)) if v)
    lines, commands = [], []
    if cfg.outputs.jsonl:
        lines.append(f"results: {cfg.outputs.dir} (results.jsonl, snapshots/)")
    if cfg.store.enabled:
        lines.append(f"history: {cfg.store.path}")
        commands += [
            (f"monitor events{opts}", "the events of the history"),
            (f"monitor events show ID{opts}", "one event: its descriptions, its snapshot"),
            (f"monitor summarize --since 1h{opts}", "what happened, in the judge model's words"),
        ]
    if cfg.outputs.jsonl:
        commands.append((f"monitor report {cfg.outputs.dir}", "one HTML page of this run"))
    if commands:
        width = max(len(c) for c, _ in commands)
        lines += ["look at them:", *(f"  {c.ljust(width)}  {what}" for c, what in commands)]
    return "\n".join(lines)


def leave(code: int, summary: RunSummary, *, as_program: bool) -> int:
    """``code``, after a run. When something was left behind still busy (a model load, a generation that
    does not stop, a decode thread in a blocking open) and the process is this command's, it ends now, as
    it is: everything of the run is written and closed, and waiting for those would hold up a stop. (Called
    in the process of another program, such as a test, the threads are left behind: they are daemons.)"""
    behind = [t.name for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
    busy = [n for n in behind if n.startswith(("load-models", "engine-", "prepare-", "decode-"))]
    if summary.abandoned or busy:
        why = f"still busy: {', '.join(summary.abandoned or busy)}"
        if as_program:
            exit_now(code, why)
        log.info("left behind, %s", why)
    return code


def judge_line(cfg: AppConfig) -> str:
    """Which judge a configuration runs, where, and with what calibration."""
    if cfg.judge_backend == "openai":
        server = cfg.judge_server
        where = f"{server.model} on {server.base_url}"
        own = cfg.judge.openai is not None or cfg.judge.model is not None
        return f"{where} (a server{'' if own else ': the VLM itself'}; no calibration: it reads hidden states)"
    judge = cfg.judge.model or f"the VLM itself ({cfg.model.id})"
    calibration = (
        f"calibration {cfg.judge.calibration} (applied when fitted for this judge)"
        if cfg.judge.calibration
        else "no calibration (the prompt alone)"
    )
    return f"{judge} (in process); {calibration}"


def check_config(path: Path) -> int:
    """``monitor check-config``: validate a configuration and summarise it."""
    cfg = load(path)
    unreadable = [
        (f"cameras.{i}.url", f"{problem} (got {shown(cam.url)!r})")
        for i, cam in enumerate(cfg.cameras)
        if not cam.is_live and (problem := file_problem(cam.url))
    ]
    if unreadable:  # `monitor run` would go on with the others; a check says so as an error
        raise ConfigError(str(path), unreadable)
    print(f"{path}: OK")
    m = cfg.model
    print(f"  model: {m.id} ({m.backend}, device {m.device}, dtype {m.dtype}, batch {m.max_batch})")
    print(f"  judge: {judge_line(cfg)}")
    print(f"  windows: size {cfg.windows.size}, stride {cfg.windows.stride}; alert threshold {cfg.alerting.threshold}")
    for cam in cfg.cameras:
        kind = "live" if cam.is_live else ("file, paced" if cam.realtime else "file")
        print(f"  camera {cam.name}: {shown(redact_url(cam.url))} ({kind})")
    return EXIT_OK


def _open_history(config: Path | None, db: Path | None, instance: str | None) -> tuple[EventStore, str | None]:
    """The event store of ``db``, else of the instance named (``--instance`` or the configuration's), else
    the most recently written one (:func:`find_history`), read-only, and its instance (None for ``db``);
    FileNotFoundError says where it looked."""
    if db is not None:
        if not db.is_file():
            relative = "" if db.is_absolute() else f" (--db is relative to the working folder {Path.cwd()})"
            raise FileNotFoundError(f"no event history at {db.resolve()}{relative}")
        return EventStore(db, readonly=True), None
    found = find_history(load_config(config), instance)
    if found.note:
        print(found.note, file=sys.stderr)
    return EventStore(found.path, readonly=True), found.instance


def _summary_judge(cfg: AppConfig, store: EventStore, judge_model: str | None) -> tuple[AppConfig, str]:
    """The configuration to summarise with, and what to say of its judge: ``--judge-model``, else the
    judge the history's newest run ran when both it and this configuration judge in process (the model
    that made the history is there), else the configured one."""
    if judge_model:
        return with_overrides(cfg, judge_model=judge_model), f"{judge_model} (--judge-model)"
    if cfg.judge_backend == "openai":
        server = cfg.judge_server
        return cfg, f"{server.model} on {server.base_url} ([judge] of the configuration)"
    last = store.last_run()
    if last is not None and last.judge_backend == "transformers" and last.judge:
        named = f"{last.judge} (the judge of the run that wrote this history; --judge-model for another)"
        return with_overrides(cfg, judge_model=last.judge), named
    return cfg, f"{cfg.judge.model or cfg.model.id} (configured; --judge-model for another)"


def events(
    *,
    config: Path | None,
    db: Path | None,
    camera: str | None,
    since: str | None,
    until: str | None,
    fmt: str,
    instance: str | None = None,
) -> int:
    """``monitor events``: the events of the history, as a table, JSON or CSV."""
    from monitor.live.history import parse_time, render

    try:
        since_t = parse_time(since) if since else None
        until_t = parse_time(until) if until else None
        store, _ = _open_history(config, db, instance)
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    with contextlib.closing(store):
        print(render(store.events(camera=camera, since=since_t, until=until_t), fmt))
    return EXIT_OK


def event_show(
    *,
    config: Path | None,
    db: Path | None,
    event_id: str,
    snapshot: Path | None,
    clip: Path | None = None,
    instance: str | None = None,
) -> int:
    """``monitor events show ID``: one event with its descriptions; writes its snapshot (and its clip)."""
    from monitor.live.history import show

    try:
        store, _ = _open_history(config, db, instance)
    except FileNotFoundError as exc:
        return fail(str(exc))
    with contextlib.closing(store):
        event = store.event(event_id)
        if event is None:
            return fail(f"no event {event_id!r} in {store.path} (or the prefix is not unique)", EXIT_FAILED)
        print(show(store, event, snapshot if snapshot is not None else Path(f"{event.id}.jpg")))
        if clip is not None:
            if event.clip is None:
                return fail(f"event {event.id} has no clip", EXIT_FAILED)
            source = store.clip_dir() / event.clip
            try:
                shutil.copyfile(source, clip)
            except OSError as exc:
                return fail(f"clip of event {event.id}: {exc.strerror or exc}: {exc.filename}", EXIT_FAILED)
            print(f"  clip written to {clip}")
    return EXIT_OK


def summarize(
    *,
    config: Path | None,
    db: Path | None,
    camera: str | None,
    since: str,
    until: str | None,
    fmt: str,
    output: Path | None,
    judge_model: str | None,
    instance: str | None = None,
    log_level: str | None = None,
) -> int:
    """``monitor summarize``: the events of a period and the model's few sentences about it."""
    from monitor.live.history import parse_time
    from monitor.live.summary import render, summarize_period

    try:
        now = time.time()
        since_t = parse_time(since, now=now)
        until_t = parse_time(until, now=now) if until else now
        if until_t <= since_t:
            return fail(f"--until ({until}) must come after --since ({since})")
        store, owner = _open_history(config, db, instance)
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    with contextlib.closing(store):
        cfg, judge = _summary_judge(for_instance(load_config(config), owner or instance), store, judge_model)
        setup_logging(log_level or cfg.log_level, configured_secrets(cfg))
        print(f"summarize: loading the judge model {judge}", file=sys.stderr)
        models = build_client(cfg, describe=False)

        async def main() -> str:
            async with models:
                summary = await summarize_period(
                    store,
                    models,
                    cfg.summaries,
                    camera=camera,
                    since=since_t,
                    until=until_t,
                    snapshots=fmt != "text",
                )
            snapshots = None if output is None else output.with_name(output.stem + "-snapshots")
            return render(summary, fmt, snapshot_dir=snapshots)

        text = asyncio.run(main())
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        print(f"summary written to {output}")
    return EXIT_OK


def forget_instance(*, config: Path | None, instance: str, dry_run: bool = False) -> int:
    """``monitor forget-instance``: clear the retained messages ``instance`` left on the configured broker
    (its Home Assistant devices, its cameras' states and settings, its availability). Exit status 0 done,
    1 the broker cannot be reached, 2 the instance is online."""
    import aiomqtt

    from sinks.mqtt_forget import InstanceOnline
    from sinks.mqtt_forget import forget_instance as forget

    cfg = load_config(config)
    setup_logging(cfg.log_level, configured_secrets(cfg))
    where = f"{cfg.mqtt.host}:{cfg.mqtt.port}"
    try:
        found = asyncio.run(forget(cfg.mqtt, instance, dry_run=dry_run))
    except InstanceOnline as exc:
        return fail(str(exc))
    except aiomqtt.MqttError as exc:
        return fail(f"MQTT broker {where}: {exc}", EXIT_FAILED)
    if not found.topics:
        known = ", ".join(f"{name} ({state})" for name, state in sorted(found.others.items())) or "none"
        print(f"nothing retained of instance {instance!r} on {where} (instances there: {known})")
        return EXIT_OK
    verb = "would clear" if dry_run else "cleared"
    print(f"{verb} {len(found.topics)} retained messages of instance {instance!r} on {where}:")
    print(f"  {len(found.discovery)} Home Assistant entities")
    for camera, topics in found.cameras.items():
        print(f"  camera {camera}: {len(topics)} states and settings")
    if found.availability:
        print(f"  its availability ({found.availability})")
    for topic in found.topics if dry_run else ():
        print(f"    {topic}")
    return EXIT_OK
