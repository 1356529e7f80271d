"""The streaming core: sources, queues, sampling, gating, the inference interface, windows, judge and alerts."""

from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    DescribeResult,
    ExplainRequest,
    ExplainResult,
    ModelClient,
    ModelInfo,
    ModelLoadError,
    ScoreRequest,
    ScoreResult,
)
from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import CameraStatus, Description, Event, EventChange, Frame, Record, WindowScore

__all__ = [
    "Backpressure",
    "CameraStatus",
    "ChatPrompt",
    "DescribeRequest",
    "DescribeResult",
    "Description",
    "Event",
    "EventChange",
    "ExplainRequest",
    "ExplainResult",
    "Frame",
    "ModelClient",
    "ModelInfo",
    "ModelLoadError",
    "QueueClosed",
    "Record",
    "ScoreRequest",
    "ScoreResult",
    "ThreadToAsyncQueue",
    "WindowScore",
]
