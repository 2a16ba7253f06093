"""sd_notify against a real AF_UNIX datagram socket that the test owns, as systemd would."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agent.notify import MAX_STATUS, Notifier


@pytest.fixture
def listener(tmp_path: Path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))


def test_messages_reach_the_socket_as_key_value_lines(listener):
    path, sock = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    n.ready("round 3, model 1a2b")
    assert received(sock) == {"READY": "1", "STATUS": "round 3, model 1a2b"}
    n.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    n.status("training\nround 4")  # a newline must not smuggle in a field
    assert received(sock) == {"STATUS": "training round 4"}
    n.status("x" * 5000)
    assert len(received(sock)["STATUS"]) == MAX_STATUS
    n.stopping("leaving the swarm")
    assert received(sock) == {"STOPPING": "1", "STATUS": "leaving the swarm"}
    n.close()


def test_abstract_socket_names_start_with_at():
    name = f"swarmdrive-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(10)
    try:
        Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == {"READY": "1"}
    finally:
        sock.close()


def test_watchdog_interval_is_half_of_what_systemd_asks_for_this_process():
    assert Notifier.from_env({"WATCHDOG_USEC": "10000000"}).watchdog_s == 5.0
    assert Notifier.from_env({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "42"},
                             pid=42).watchdog_s == 2.0
    assert Notifier.from_env({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "42"},
                             pid=43).watchdog_s is None  # meant for another process
    assert Notifier.from_env({"WATCHDOG_USEC": "junk"}).watchdog_s is None
    assert Notifier.from_env({}).watchdog_s is None


def test_outside_systemd_or_with_the_socket_gone_nothing_is_raised(tmp_path: Path):
    off = Notifier.from_env({})
    assert not off.enabled and off.send({"READY": "1"}) is False
    gone = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert gone.send({"WATCHDOG": "1"}) is False
    gone.watchdog()
    assert gone.failures == 2
