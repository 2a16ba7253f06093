"""Listening to a fleet's telemetry (docs/spec/telemetry-v1.md) as an operator would: every
message under ``swarmdrive/#``, counted per vehicle and topic, the latest of each kept."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class TelemetryWatch:
    def __init__(self, host: str, port: int, prefix: str = "swarmdrive") -> None:
        self.prefix = prefix
        self.counts: Counter[tuple[str, str]] = Counter()  # (vehicle, leaf) -> messages
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[tuple[str, dict[str, Any]]] = []  # (topic, payload), in arrival order
        self.bad = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)  # the test stops and starts the broker
        self.client.connect_async(host, port)

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = None
        with self._lock:
            if len(parts) != 4 or not isinstance(body, dict):
                self.bad += 1
                return
            key = (parts[2], parts[3])
            self.counts[key] += 1
            self.latest[key] = body
            self.log.append((msg.topic, body))

    def count(self, vehicle: str, leaf: str) -> int:
        with self._lock:
            return self.counts[(vehicle, leaf)]

    def summary(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (vehicle, leaf), n in sorted(self.counts.items()):
                out.setdefault(vehicle, {})[leaf] = n
            return out

    def __enter__(self) -> TelemetryWatch:
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()
