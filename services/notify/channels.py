"""Delivery channels: signed webhooks and MQTT.

Every notification is the same JSON body (:func:`notification_body`): the event message, its
top descriptions, a short-lived evidence link and the idempotency key
``<event id>:<version>:<channel>``, so a receiver that sees a retry twice keeps one.

Webhooks carry ``Idempotency-Key``, ``X-Vigil-Timestamp`` and, with a secret,
``X-Vigil-Signature: sha256=<hex>`` = HMAC-SHA256(secret, ``<timestamp>.<body>``) over the
exact bytes sent; a receiver checks it with :func:`verify_signature` and refuses old
timestamps (a replayed request). MQTT publishes the body to ``<prefix>/events`` and
``<prefix>/<camera>/event`` at the channel's QoS, as home-automation and VMS integrations
subscribe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Any, Protocol

import httpx

from vigil.config import MqttChannel, WebhookChannel
from vigil.contracts import EventMessage

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """The channel did not take the notification (it is retried)."""


class Sender(Protocol):
    name: str

    def send(self, body: bytes, *, key: str, camera_id: str) -> None: ...

    def close(self) -> None: ...


def idempotency_key(event_id: str, version: int, channel: str) -> str:
    return f"{event_id}:{version}:{channel}"


def notification_body(msg: EventMessage, *, key: str, evidence_url: str | None, top: int = 3) -> bytes:
    body: dict[str, Any] = {
        "idempotency_key": key,
        "event": msg.model_dump(mode="json"),
        "top_descriptions": [d.model_dump(mode="json") for d in msg.top_descriptions[:top]],
        "evidence_url": evidence_url,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300.0,
                     now: float | None = None) -> bool:
    """What a receiver runs: the signature matches these bytes and the timestamp is recent."""
    try:
        age = (time.time() if now is None else now) - float(timestamp)
    except ValueError:
        return False
    return abs(age) <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender:
    def __init__(self, cfg: WebhookChannel) -> None:
        self.cfg, self.name = cfg, cfg.name
        self.client = httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)

    def send(self, body: bytes, *, key: str, camera_id: str) -> None:
        ts = f"{time.time():.3f}"
        headers = {**self.cfg.headers, "Content-Type": "application/json", "Idempotency-Key": key,
                   "X-Vigil-Timestamp": ts, "User-Agent": "vigil-notify"}
        if self.cfg.secret is not None:
            headers["X-Vigil-Signature"] = sign(self.cfg.secret.get_secret_value(), ts, body)
        try:
            r = self.client.post(self.cfg.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= r.status_code < 300:
            raise DeliveryError(f"HTTP {r.status_code}: {r.text[:200]}")

    def close(self) -> None:
        self.client.close()


class MqttSender:
    """One paho client per channel, connected in the background (it reconnects by itself)."""

    def __init__(self, cfg: MqttChannel) -> None:
        import paho.mqtt.client as mqtt

        self.cfg, self.name = cfg, cfg.name
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"vigil-notify-{cfg.name}",
                                  clean_session=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.connect_async(cfg.host, cfg.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("MQTT channel %s: broker refused the connection (%s)", self.name, reason_code)
            return
        self._connected.set()

    def topics(self, camera_id: str) -> list[str]:
        p = self.cfg.topic_prefix.rstrip("/")
        return [f"{p}/events", f"{p}/{camera_id}/event"]

    def send(self, body: bytes, *, key: str, camera_id: str) -> None:
        if not self._connected.wait(self.cfg.timeout_s):
            raise DeliveryError(f"not connected to the MQTT broker at {self.cfg.host}:{self.cfg.port}")
        for topic in self.topics(camera_id):
            info = self.client.publish(topic, body, qos=self.cfg.qos)
            try:
                info.wait_for_publish(self.cfg.timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise DeliveryError(f"publish to {topic} failed: {exc}") from None
            if not info.is_published():
                raise DeliveryError(f"publish to {topic} not acknowledged within {self.cfg.timeout_s} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def make_sender(cfg: WebhookChannel | MqttChannel) -> Sender:
    return WebhookSender(cfg) if cfg.kind == "webhook" else MqttSender(cfg)
