"""``[[cameras]]``: one entry per source, and how each camera's overrides merge over the global sections.

A camera may override any key of ``[sampling]``, ``[windows]``, ``[alerting]``, the prompt keys of
``[model]`` (``prompt``, ``max_new_tokens``) and of ``[judge]`` (``system``, ``prompt``, ``answers``,
``explain_prompt``, ``explain_max_new_tokens``, ``smoothing``) in a table of the same name::

    [[cameras]]
    name = "driveway"
    url = "rtsp://..."
    [cameras.sampling]
    fps = 1.0
    [cameras.alerting]
    threshold = 0.8

A camera's ``[[cameras.rules]]`` add to the global ``[[rules]]``, replacing one of the same name; its rules
start with the general anomaly rule, built from its ``judge`` and ``alerting`` and ``[judge] calibration``.

The merge happens once, during validation: the result is a :class:`~pipeline.camera.CameraSettings` whose
sections and rules are complete, so every stage reads its settings from one object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from pipeline.alerts import AlertSettings
from pipeline.camera import GENERAL_RULE_MARK, CameraSettings, DescribeSettings
from pipeline.judge import JudgeSettings
from pipeline.rules import merge_rules
from pipeline.sampling import SamplingSettings
from pipeline.windows import WindowSettings

CameraConfig = CameraSettings
"""One camera, with its sections merged (the type of ``AppConfig.cameras``)."""

OVERRIDABLE: dict[str, type[BaseModel]] = {
    "sampling": SamplingSettings,
    "windows": WindowSettings,
    "alerting": AlertSettings,
    "model": DescribeSettings,
    "judge": JudgeSettings,
}
"""Sections a camera may override, and the settings model that each camera gets for it."""


def _as_dict(value: Any, *, only_set: bool) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=only_set)
    return value


def merge_camera(camera: Any, root: Mapping[str, Any]) -> Any:
    """One camera's table with each overridable section completed from the global section of ``root``.

    The camera's own keys win. Setting ``every_n_frames`` without ``fps`` on a camera means "every Kth
    frame" even where ``[sampling]`` has an ``fps``. Values that are not tables are left for validation
    to report.
    """
    built = camera.rules[1:] if isinstance(camera, CameraSettings) else None  # validated before: keep its rules
    camera = _as_dict(camera, only_set=True)
    if not isinstance(camera, dict):
        return camera
    out = dict(camera)
    for section, model in OVERRIDABLE.items():
        base = _as_dict(root.get(section, {}), only_set=False)
        own = _as_dict(camera.get(section, {}), only_set=True)
        if not isinstance(base, dict) or not isinstance(own, dict):
            continue
        inherited = {k: v for k, v in base.items() if k in model.model_fields}
        if section == "sampling" and "every_n_frames" in own and "fps" not in own:
            inherited["fps"] = None
        out[section] = {**inherited, **own}
    global_rules, own_rules = root.get("rules", []), camera.get("rules", []) if built is None else built
    judge = root.get("judge")
    calibration = judge.get("calibration") if isinstance(judge, dict) else getattr(judge, "calibration", None)
    mark = {**GENERAL_RULE_MARK, "calibration": calibration}
    if isinstance(global_rules, list | tuple) and isinstance(own_rules, list | tuple):
        out["rules"] = [mark, *merge_rules(global_rules, own_rules)]
    return out


def inherited_error(raw_cameras: Any, loc: tuple[int | str, ...], global_rules: Any = ()) -> bool:
    """Whether a validation error at ``cameras.N.SECTION[.KEY]`` concerns only values the camera inherited
    (the same error is then reported once, at the global section)."""
    if len(loc) >= 3 and loc[0] == "cameras" and loc[2] == "rules" and isinstance(loc[1], int):
        if len(loc) == 3:  # the list as a whole: the camera's own problem only if it has rules of its own
            try:
                return not raw_cameras[loc[1]].get("rules")
            except (IndexError, TypeError, AttributeError):
                return False
        return _inherited_rule(raw_cameras, loc[1], loc[3], global_rules)
    if len(loc) < 3 or loc[0] != "cameras" or loc[2] not in OVERRIDABLE or not isinstance(loc[1], int):
        return False
    try:
        own = raw_cameras[loc[1]].get(loc[2], {})
    except (IndexError, TypeError, AttributeError):
        return False
    own = _as_dict(own, only_set=True)
    if not isinstance(own, dict):
        return False
    return not own if len(loc) == 3 else loc[3] not in own


def _inherited_rule(raw_cameras: Any, camera: int, index: int | str, global_rules: Any) -> bool:
    """Whether rule ``index`` of a merged camera is the general rule (built from sections whose errors are
    reported there) or a global rule the camera did not replace."""
    if index == 0:
        return True
    try:
        own = raw_cameras[camera].get("rules", [])
    except (IndexError, TypeError, AttributeError):
        return False
    if not isinstance(own, list | tuple) or not isinstance(global_rules, list | tuple) or not isinstance(index, int):
        return False
    merged = merge_rules(global_rules, own)
    own_ids = {id(r) for r in own}
    return 0 < index <= len(merged) and id(merged[index - 1]) not in own_ids
