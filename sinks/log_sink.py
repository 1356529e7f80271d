"""A sink that reports to the log: events loudly, scores and descriptions quietly."""

from __future__ import annotations

import logging

from pipeline.records import CameraStatus, ControlState, Description, EventChange, Record, WindowScore

log = logging.getLogger("monitor.results")


class LogSink:
    """Logs events at WARNING, scores at INFO, descriptions at INFO or DEBUG, status at DEBUG."""

    name = "log"

    def __init__(self, *, log_descriptions: bool = False) -> None:
        self.description_level = logging.INFO if log_descriptions else logging.DEBUG

    async def open(self) -> None:
        return None

    async def handle(self, record: Record) -> None:
        if isinstance(record, Description):
            tag = " (reused)" if record.reused else ""
            log.log(
                self.description_level,
                "%s t=%.1fs frame %d%s: %s",
                record.camera,
                record.stream_time,
                record.frame_index,
                tag,
                record.text,
            )
        elif isinstance(record, WindowScore):
            log.info(
                "%s window %d [%.1f-%.1f s] %s %.3f",
                record.camera,
                record.seq,
                record.start_time,
                record.end_time,
                record.rule,
                record.score,
            )
        elif isinstance(record, EventChange):
            ev = record.after
            if record.type == "new":
                log.warning(
                    "%s on %s: event %s started at %.1f s, score %.3f, severity %d",
                    ev.rule.upper(),
                    ev.camera,
                    ev.id,
                    ev.start_time,
                    ev.peak_score,
                    ev.severity,
                )
            elif record.type == "end":
                log.warning(
                    "event %s on %s ended at %.1f s (peak %.3f)", ev.id, ev.camera, ev.end_time or 0.0, ev.peak_score
                )
            elif ev.explanation and (record.before is None or record.before.explanation != ev.explanation):
                log.warning("event %s on %s: %s", ev.id, ev.camera, ev.explanation)
            else:
                log.info("event %s on %s: peak now %.3f", ev.id, ev.camera, ev.peak_score)
        elif isinstance(record, ControlState):
            rules = ", ".join(f"{r.name} {r.threshold:g}{'' if r.enabled else ' (paused)'}" for r in record.rules)
            log.info("%s: %s; rules: %s", record.camera, "on" if record.enabled else "OFF", rules)
        elif isinstance(record, CameraStatus):
            log.debug(
                "%s: %s, %.1f fps, %d dropped, queue %d",
                record.camera,
                "connected" if record.connected else "disconnected",
                record.fps,
                record.frames_dropped,
                record.queue_depth,
            )

    async def close(self) -> None:
        return None
