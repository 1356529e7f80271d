"""The one factory of models: ``[model] backend`` and ``[judge] backend`` decide what a command gets.

Every command asks here for what it needs (a client that describes and judges, or a judge alone) and
gets a :class:`~pipeline.inference.ModelClient`; nothing else builds models.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monitor.config import AppConfig
from monitor.env import hf_token
from pipeline.calibration import JudgeCalibration
from pipeline.engines.batching import BatchingEngine, BatchModel
from pipeline.engines.openai import OpenAIClient, OpenAISettings
from pipeline.engines.split import SplitClient
from pipeline.inference import ModelClient, ModelInfo
from pipeline.judge import Judge
from pipeline.rules import Rule

log = logging.getLogger(__name__)


def batching_engine(cfg: AppConfig, describer: BatchModel | None, judge: BatchModel | None = None) -> BatchingEngine:
    """The in-process engine over loaded models, batching as ``[model]`` says (not started)."""
    return BatchingEngine(
        describer, judge=judge, max_batch=cfg.model.max_batch, max_wait_ms=cfg.model.max_wait_ms, name="model"
    )


def _transformers(model_id: str, cfg: AppConfig, *, judge: bool) -> BatchModel:
    from pipeline.engines.transformers import TransformersModel

    m, j = cfg.model, cfg.judge
    own = judge and j.model is not None
    return TransformersModel(
        model_id,
        device=(j.device or m.device) if own else m.device,
        dtype=(j.dtype or m.dtype) if own else m.dtype,
        revision=j.revision if own else m.revision,
        attn_implementation=m.attn_implementation,
        token=hf_token(),
        chat_template=j.chat_template if judge or j.model is None else "auto",
    )


def _server(cfg: AppConfig, settings: OpenAISettings, *, describe: bool, judge: bool) -> OpenAIClient:
    key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if settings.api_key_env and not key:
        log.warning("model server %s: %s is not set; sending no API key", settings.base_url, settings.api_key_env)
    return OpenAIClient(
        settings, describe=describe, judge=judge, chat_judge=cfg.judge.chat_template != "never", api_key=key
    )


def build_client(cfg: AppConfig, *, describe: bool = True) -> ModelClient:
    """What a command needs: the vision-language model (``describe``) and the judge, each where its
    ``backend`` says. The judge is the VLM itself unless ``[judge]`` names another model or server.
    Loading in-process models happens here (ModelLoadError); a server is checked when the client is entered.
    """
    m, j = cfg.model, cfg.judge
    judge_backend = cfg.judge_backend
    own_judge = j.model is not None or judge_backend != m.backend or j.openai is not None
    if m.backend == "openai":
        assert m.openai is not None  # validated
        vlm: ModelClient | None = _server(cfg, m.openai, describe=describe, judge=not own_judge) if describe else None
        if not own_judge:
            return vlm if vlm is not None else _server(cfg, m.openai, describe=False, judge=True)
    else:
        model = _transformers(m.id, cfg, judge=False) if describe else None
        if not own_judge and model is not None:
            return batching_engine(cfg, model)
        if judge_backend == "transformers":  # both in process: one engine serves both models
            return batching_engine(cfg, model, _transformers(j.model or m.id, cfg, judge=True))
        vlm = batching_engine(cfg, model) if model is not None else None
    if judge_backend == "openai":
        settings = j.openai
        if settings is None:  # validated: the [model] server, serving another model when [judge] model says
            assert m.openai is not None
            settings = m.openai.model_copy(update={"model": j.model}) if j.model else m.openai
        judge: ModelClient = _server(cfg, settings, describe=False, judge=True)
    else:
        assert j.model is not None  # validated: a remote VLM needs a named in-process judge
        judge = batching_engine(cfg, None, _transformers(j.model, cfg, judge=True))
    return judge if vlm is None else SplitClient(vlm, judge)


def load_calibration(path: Path, judge: ModelInfo, rule: Rule) -> JudgeCalibration | None:
    """The calibration file if it was fitted for this judge model and the rule's prompt; else None (with a
    warning saying why)."""
    cal = JudgeCalibration.load(path)
    if cal.fingerprint and cal.fingerprint != judge.fingerprint:
        log.warning(
            "judge calibration %s was fitted for %s, not for the judge %s: scoring without it",
            path,
            cal.model,
            judge.name,
        )
        return None
    if cal.prompt and cal.prompt != rule.prompt_hash:
        log.warning(
            "judge calibration %s was fitted with another prompt than rule %r's: scoring without it "
            "(run monitor calibrate-judge again)",
            path,
            rule.name,
        )
        return None
    log.info("rule %r calibrated by %s (probe on layers %s)", rule.name, path, ",".join(map(str, cal.layers)))
    return cal


def build_judge(cfg: AppConfig, models: ModelClient) -> Judge:
    """The judge stage over a model client, with the configured score cache and every rule's calibration
    (each file loaded once, for the rules it fits)."""
    calibrations: dict[Path, JudgeCalibration] = {}
    tried: set[tuple[Path, str]] = set()
    for rule in (r for cam in cfg.cameras for r in cam.rules if r.calibration is not None):
        assert rule.calibration is not None
        if (rule.calibration, rule.prompt_hash) in tried:
            continue
        tried.add((rule.calibration, rule.prompt_hash))
        cal = load_calibration(rule.calibration, models.judge, rule)
        if cal is not None:
            calibrations[rule.calibration] = cal
    return Judge(models, cache_size=cfg.judge.cache_size, calibrations=calibrations)
