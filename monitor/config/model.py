"""``[model]``: which vision-language model describes frames, where it runs and how it batches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.camera import DescribeSettings

Device = Literal["auto", "cuda", "cpu"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
Backend = Literal["transformers"]


class ModelConfig(DescribeSettings):
    """The vision-language model that describes frames (and, by default, judges them).

    ``prompt`` and ``max_new_tokens`` may be overridden per camera (``[cameras.model]``).
    """

    backend: Backend = Field("transformers", title="transformers: in process (Hugging Face)")
    id: str = Field("google/gemma-3-4b-it", min_length=1, title="Hub id or local directory")
    revision: str | None = Field(None, title="Hub revision (branch, tag or commit)")
    device: Device = Field("auto", title="auto picks CUDA when available")
    dtype: DType = Field("auto", title="auto: bfloat16 on CUDA, float32 on CPU")
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    max_batch: int = Field(8, ge=1, le=256, title="Most requests served by one model call")
    max_wait_ms: float = Field(50.0, ge=0, le=10_000, title="Longest wait to fill a batch")
    image_max_side: int = Field(896, ge=32, le=4096, title="Frames are scaled down to at most this many pixels")
