"""sd_notify: telling systemd a service is ready, alive, busy with what, and stopping.

The protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` lines in one datagram to the
AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace).
``WATCHDOG_USEC`` (for ``WATCHDOG_PID``, if set) asks for ``WATCHDOG=1`` at least that often;
we ping at half of it, as systemd recommends. Outside systemd (no ``$NOTIFY_SOCKET``) every call
is a no-op. A failed send is logged and counted, never raised: telling systemd must not stop a
vehicle. Standard library only, so the serving process can use it without torch or libp2p.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

MAX_STATUS = 1024  # STATUS= is a one-line summary; journald and `systemctl status` show it


class Notifier:
    """Sends sd_notify messages to one socket (or nowhere, outside systemd)."""

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s  # ping at least this often; None: no watchdog asked for
        self.failures = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, pid: int | None = None) -> Notifier:
        """The notifier systemd configured for this process through its environment."""
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s = None
        usec, for_pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        mine = not for_pid or for_pid == str(pid if pid is not None else os.getpid())
        if usec.isdigit() and int(usec) > 0 and mine:
            watchdog_s = int(usec) / 1e6 / 2
        return cls(address, watchdog_s)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> None:
        self.send({"READY": "1"} | ({"STATUS": status} if status else {}))

    def status(self, text: str) -> None:
        self.send({"STATUS": text})

    def watchdog(self, status: str | None = None) -> None:
        self.send({"WATCHDOG": "1"} | ({"STATUS": status} if status else {}))

    def reloading(self) -> None:
        """Reloading now; READY=1 follows when done. systemd wants the monotonic time with it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send({"RELOADING": "1", "MONOTONIC_USEC": str(usec)})

    def stopping(self, status: str | None = None) -> None:
        self.send({"STOPPING": "1"} | ({"STATUS": status} if status else {}))

    def send(self, fields: Mapping[str, str]) -> bool:
        """One datagram of ``KEY=VALUE`` lines; False (logged, counted) if it could not go."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            one_line = " ".join(str(value).split())  # a newline would start a new field
            if key == "STATUS":
                one_line = one_line[:MAX_STATUS]
            lines.append(f"{key}={one_line}")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), _sockaddr(self.address))
            return True
        except OSError as e:
            self.failures += 1
            log.warning("sd_notify_failed socket=%s error=%s", self.address, e)
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _sockaddr(address: str) -> str | bytes:
    """``@name`` is Linux's abstract namespace: a leading NUL byte instead of the ``@``."""
    return b"\0" + address[1:].encode() if address.startswith("@") else address
