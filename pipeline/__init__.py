"""The streaming core: sources, queues, sampling, gating, inference, windows, judge and alerts."""

from pipeline.alerts import AlertMachine, AlertSettings
from pipeline.backend import ChatPrompt, ModelBackend, ModelLoadError
from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import CameraStatus, Description, Event, EventChange, Frame, Record, WindowScore
from pipeline.sampling import FrameSampler
from pipeline.worker import InferenceWorker

__all__ = [
    "AlertMachine",
    "AlertSettings",
    "Backpressure",
    "CameraStatus",
    "ChatPrompt",
    "Description",
    "Event",
    "EventChange",
    "Frame",
    "FrameSampler",
    "InferenceWorker",
    "ModelBackend",
    "ModelLoadError",
    "QueueClosed",
    "Record",
    "ThreadToAsyncQueue",
    "WindowScore",
]
