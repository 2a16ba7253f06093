"""Telemetry over MQTT 5 (docs/spec/telemetry-v1.md): what a vehicle tells the fleet's
operators, never its frames.

Topics, under ``{prefix}/v1/{vehicle address}/``: ``state`` (retained: the birth message when
connected, the Last Will ``online: false`` when the broker loses the vehicle), ``status``
(retained, every ``interval_s``), ``round`` (one per final round) and ``alarm`` (one per alarm
raised or cleared). QoS 1.

paho runs its own network thread (``loop_start``) and reconnects with backoff; ``publish``
only queues, so a broker that is down never blocks the vehicle. While disconnected, messages
wait in paho's queue (bounded by ``queue_limit``; beyond it new messages are dropped and
counted) and go out on reconnect. Nothing here calls back into trio.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config.schema import Telemetry as TelemetryConfig

log = logging.getLogger(__name__)

SCHEMA = 1
KEEPALIVE_S = 30
SESSION_EXPIRY_S = 3600  # the broker keeps our unacknowledged messages this long
BACKOFF_S = (1, 60)


def topic(prefix: str, vehicle: str, leaf: str) -> str:
    return f"{prefix}/v{SCHEMA}/{vehicle}/{leaf}"


class Telemetry:
    """One vehicle's MQTT connection."""

    def __init__(self, cfg: TelemetryConfig, vehicle: str, birth: Mapping[str, object]) -> None:
        self.cfg, self.vehicle = cfg, vehicle
        self.birth = dict(birth)
        self.connected = threading.Event()
        self.dropped = 0
        self.connects = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"swarmdrive-{vehicle}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_queued_messages_set(cfg.queue_limit)
        self.client.reconnect_delay_set(*BACKOFF_S)
        if cfg.tls:
            self.client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
        if cfg.username_file is not None and cfg.password_file is not None:
            self.client.username_pw_set(_read_secret(cfg.username_file),
                                        _read_secret(cfg.password_file))
        will = self._payload({"online": False})
        self.client.will_set(self.topic("state"), will, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def topic(self, leaf: str) -> str:
        return topic(self.cfg.topic_prefix, self.vehicle, leaf)

    def _payload(self, body: Mapping[str, object]) -> bytes:
        return json.dumps({"v": SCHEMA, "vehicle": self.vehicle, "ts": round(time.time(), 3),
                           **body}, separators=(",", ":")).encode()

    # paho's thread ------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: object, properties: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("telemetry_refused broker=%s:%d reason=%s", self.cfg.host, self.cfg.port,
                        reason)
            return
        self.connects += 1
        self.connected.set()
        log.info("telemetry_connected broker=%s:%d", self.cfg.host, self.cfg.port)
        # The birth goes out on every connect: the Will may have replaced it meanwhile.
        client.publish(self.topic("state"), self._payload({"online": True, **self.birth}),
                       qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: object, properties: object) -> None:
        if self.connected.is_set():
            log.warning("telemetry_disconnected broker=%s:%d reason=%s", self.cfg.host,
                        self.cfg.port, reason)
        self.connected.clear()

    # the vehicle's side -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; never blocks, never raises for a broker that is away."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            self.client.connect_async(self.cfg.host, self.cfg.port, KEEPALIVE_S,
                                      clean_start=False, properties=props)
        except (OSError, ValueError) as e:
            log.warning("telemetry_connect_failed broker=%s:%d error=%s", self.cfg.host,
                        self.cfg.port, e)
        self.client.loop_start()

    def publish(self, leaf: str, body: Mapping[str, object], retain: bool = False) -> bool:
        """Queue one message; False (counted) if the offline queue is full."""
        info = self.client.publish(self.topic(leaf), self._payload(body), qos=1, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            return False
        return True

    def stop(self) -> None:
        """Say we are leaving (retained ``online: false``), then disconnect."""
        if self.connected.is_set():
            info = self.client.publish(self.topic("state"), self._payload(
                {"online": False, "reason": "stopped"}), qos=1, retain=True)
            # The broker may go away meanwhile: then the Will says the same.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=1.0)
        self.client.disconnect()
        self.client.loop_stop()


def _read_secret(path: Path) -> str:
    return path.read_text().strip()
