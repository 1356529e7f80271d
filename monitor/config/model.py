"""``[model]``: which vision-language model describes frames, where it runs and how it batches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.camera import DescribeSettings
from pipeline.engines.openai import OpenAISettings

Device = Literal["auto", "cuda", "cpu"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
Backend = Literal["transformers", "openai"]


class ModelConfig(DescribeSettings):
    """The vision-language model that describes frames (and, by default, judges them).

    ``prompt`` and ``max_new_tokens`` may be overridden per camera (``[cameras.model]``).
    """

    backend: Backend = Field(
        "transformers", title="transformers: in process (Hugging Face); openai: an OpenAI-compatible server"
    )
    openai: OpenAISettings | None = Field(None, title="The server, for backend = 'openai' ([model.openai])")
    id: str = Field("google/gemma-3-4b-it", min_length=1, title="Hub id or local directory (backend transformers)")
    revision: str | None = Field(None, title="Hub revision (branch, tag or commit)")
    device: Device = Field("auto", title="auto picks CUDA when available")
    dtype: DType = Field("auto", title="auto: bfloat16 on CUDA, float32 on CPU")
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    max_batch: int = Field(8, ge=1, le=256, title="Most requests served by one model call")
    max_wait_ms: float = Field(50.0, ge=0, le=10_000, title="Longest wait to fill a batch")
    image_max_side: int = Field(896, ge=32, le=4096, title="Frames are scaled down to at most this many pixels")

    @model_validator(mode="after")
    def _server(self) -> ModelConfig:
        if self.backend == "openai" and self.openai is None:
            raise ValueError("backend = 'openai' needs the server: add [model.openai] with base_url and model")
        return self
