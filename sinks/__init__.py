"""Consumers of pipeline results: each isolated behind its own bounded queue."""

from sinks.base import Sink, SinkHub, SinkRunner
from sinks.jsonl_sink import JsonLinesSink
from sinks.log_sink import LogSink

__all__ = ["JsonLinesSink", "LogSink", "Sink", "SinkHub", "SinkRunner"]
