"""``[judge]``: the model that scores windows of descriptions, its prompts and its calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from monitor.config.model import Backend, Device, DType
from pipeline.engines.openai import OpenAISettings
from pipeline.judge import JudgeSettings


class JudgeConfig(JudgeSettings):
    """The language model that scores windows of descriptions.

    The prompt settings (``system``, ``prompt``, ``answers``, ``explain_prompt``, ``smoothing``, ...) may
    be overridden per camera (``[cameras.judge]``); the model and its calibration are global.
    """

    model: str | None = Field(None, title="Text-only judge model (hub id or directory); unset: the VLM itself")
    backend: Backend | None = Field(None, title="Where the judge model runs; unset: as [model] backend")
    openai: OpenAISettings | None = Field(
        None, title="The judge's own server ([judge.openai]); unset with backend openai: the [model] server"
    )
    revision: str | None = None
    device: Device | None = Field(None, title="Defaults to the model's device")
    dtype: DType | None = Field(None, title="Defaults to the model's dtype")
    chat_template: Literal["auto", "always", "never"] = Field(
        "auto",
        title="Wrap prompts in the model's chat template (auto: when it has one; on a server: always unless "
        "'never', which sends plain text to /completions, for base models)",
    )
    cache_size: int = Field(512, ge=0, le=1_000_000, title="Windows whose score is remembered (0: off)")
    calibration: Path | None = Field(
        None, title="A calibration file written by `monitor calibrate-judge` for this judge model"
    )
