"""The console's command: ``monitor console``, an MQTT subscriber window."""

from __future__ import annotations

from pathlib import Path

from monitor.console.launch import run_subscriber
from monitor.console.subscriber import BrokerAddress
from monitor.env import secrets_to_hide
from monitor.logs import setup_logging
from monitor.options import configured_secrets, fail, for_instance, load_config


def console(
    *,
    broker: str | None,
    prefix: str | None,
    config: Path | None,
    threshold: float | None,
    span_s: float,
    history: Path | None,
    hours: float,
    ca_file: str | None,
    log_level: str | None,
    instance: str | None = None,
) -> int:
    """``monitor console``: the operator window over a broker (``--broker`` or ``[mqtt]`` of the config)."""
    cfg = for_instance(load_config(config), instance)
    setup_logging(log_level or cfg.log_level, [*configured_secrets(cfg), *secrets_to_hide([broker or ""])])
    if broker:
        try:
            address = BrokerAddress.parse(broker)
        except ValueError as exc:
            return fail(f"--broker: {exc}")
    else:
        m = cfg.mqtt
        address = BrokerAddress(m.host, m.port, m.username, m.password, tls=m.tls is not None)
    ca = ca_file or (str(cfg.mqtt.tls.ca_file) if cfg.mqtt.tls and cfg.mqtt.tls.ca_file else None)
    store = history if history is not None else (cfg.store.path if cfg.store.path.is_file() else None)
    return run_subscriber(
        address,
        prefix or cfg.mqtt.topic_prefix,
        threshold=threshold,
        span_s=span_s,
        history=store,
        hours=hours,
        ca_file=ca,
    )
