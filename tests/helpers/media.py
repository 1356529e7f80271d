"""Synthetic video clips for tests, encoded with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def make_clip(
    path: Path,
    *,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 96),
    codec: str = "libx264",
    moving: bool = True,
    static_until: float = 0.0,
) -> Path:
    """Write a clip: a bright square that moves (after ``static_until`` seconds) over a gradient."""
    width, height = size
    n = round(seconds * fps)
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
    base = np.zeros((height, width, 3), dtype=np.uint8)
    base[..., 0] = np.linspace(0, 120, width, dtype=np.uint8)[None, :]
    base[..., 2] = np.linspace(0, 120, height, dtype=np.uint8)[:, None]
    for i in range(n):
        img = base.copy()
        t = i / fps
        if moving and t >= static_until:
            x = int((t - static_until) * 40) % max(1, width - 20)
            img[30:50, x : x + 20] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def corrupt_copy(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose payload after the first 2 KiB is overwritten with garbage."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    data[2048:] = rng.integers(0, 256, len(data) - 2048, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst
