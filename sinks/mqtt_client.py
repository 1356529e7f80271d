"""A client of the configured broker (address, login, TLS, keepalive), and clearing retained messages:
shared by the monitor's connection and ``monitor forget-instance``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import aiomqtt

from sinks.mqtt_settings import MqttSettings


def mqtt_client(cfg: MqttSettings, client_id: str, *, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    """A client for the configured broker: its address, login, TLS and keepalive."""
    tls_params = None
    if cfg.tls is not None:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_NONE if cfg.tls.insecure else ssl.CERT_REQUIRED,
        )
    return aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=client_id,
        username=cfg.username,
        password=cfg.password,
        will=will,
        tls_params=tls_params,
        tls_insecure=cfg.tls.insecure if cfg.tls is not None else None,
        keepalive=cfg.keepalive_s,
        timeout=10.0,
    )


async def forget_topics(client: aiomqtt.Client, topics: Sequence[str]) -> None:
    """Clear the retained message of each topic (an empty retained message, which the broker drops)."""
    await asyncio.gather(*(client.publish(t, b"", qos=1, retain=True, timeout=5.0) for t in topics))
