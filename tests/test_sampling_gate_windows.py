from __future__ import annotations

import numpy as np
import pytest

from pipeline.motion import MotionGate, frame_change
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.windows import SlidingWindows, WindowSettings


def test_every_kth_frame() -> None:
    s = FrameSampler(SamplingSettings(every_n_frames=10))
    assert [i for i in range(35) if s.take(i, i / 10)] == [0, 10, 20, 30]


def test_target_rate() -> None:
    s = FrameSampler(SamplingSettings(fps=2.0))
    # 25 fps for 3 s -> 6 samples, half a second apart
    times = [i / 25 for i in range(75) if s.take(i, i / 25)]
    assert len(times) == 6
    assert np.allclose(np.diff(times), 0.5, atol=0.04)


def test_target_rate_restarts_after_gap() -> None:
    s = FrameSampler(SamplingSettings(fps=1.0))
    assert s.take(0, 0.0)
    assert s.take(1, 100.0)  # a reconnect jumped ahead: one sample, not a burst of 100
    assert not s.take(2, 100.5)
    assert s.take(3, 101.0)


def test_invalid_sampler() -> None:
    with pytest.raises(ValueError):
        FrameSampler(SamplingSettings(every_n_frames=0))
    with pytest.raises(ValueError):
        FrameSampler(SamplingSettings(fps=0))


def thumb(v: int) -> np.ndarray:
    return np.full((36, 64), v, dtype=np.uint8)


def test_motion_gate_skips_unchanged_scene() -> None:
    gate = MotionGate(SamplingSettings(motion_gate=True, motion_threshold=0.02, motion_max_reuse_s=10))
    assert gate.needs_model(thumb(100), 0.0)  # first frame is always described
    assert not gate.needs_model(thumb(101), 1.0)  # tiny change: reuse
    drift = thumb(100)
    drift[:, :32] = 120  # half the picture 20 levels brighter: below the pixel delta, noise
    assert not gate.needs_model(drift, 2.0)
    small = thumb(100)
    small[:4, :4] = 200  # a small figure: 16 of 2304 pixels = 0.7 %
    assert not gate.needs_model(small, 2.5)
    small[:8, :8] = 200  # 64 pixels = 2.8 %: motion
    assert gate.needs_model(small, 3.0)
    assert not gate.needs_model(small, 4.0)  # compared with the new reference
    assert gate.needs_model(small, 13.5)  # too long since the last description


def test_motion_gate_disabled_and_change_metric() -> None:
    gate = MotionGate(SamplingSettings(motion_gate=False, motion_threshold=0.5, motion_max_reuse_s=10))
    assert all(gate.needs_model(thumb(100), t) for t in range(5))
    assert frame_change(thumb(0), thumb(255)) == 1.0
    assert frame_change(thumb(0), np.zeros((10, 10), np.uint8)) == 1.0  # size change counts as change


def test_windows_size_and_stride() -> None:
    w = SlidingWindows[int](WindowSettings(size=3, stride=2))
    out = [w.add(i) for i in range(8)]
    assert [o for o in out if o] == [(0, 1, 2), (2, 3, 4), (4, 5, 6)]
    assert w.flush() == (5, 6, 7)
    assert w.flush() is None


def test_windows_flush_short_stream_and_stride_one() -> None:
    w = SlidingWindows[int](WindowSettings(size=3, stride=2))
    w.add(0)
    assert w.flush() == (0,)
    w1 = SlidingWindows[int](WindowSettings(size=2, stride=1))
    assert [w1.add(i) for i in range(4)] == [None, (0, 1), (1, 2), (2, 3)]
    assert w1.flush() is None
    with pytest.raises(ValueError):
        SlidingWindows[int](WindowSettings(size=2, stride=3))
