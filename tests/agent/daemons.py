"""Running the vehicle's daemons as real processes under a notify socket the test owns, as
systemd would run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

# Hang guards for a loaded 2-core machine, not speed targets: tests wait on the messages.
WAIT_S = 120.0


class NotifySocket:
    """An AF_UNIX datagram socket in the role of systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def next(self, timeout: float) -> dict[str, str] | None:
        """The next message, or None if none came within ``timeout`` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        self.messages.append(msg)
        return msg

    def wait_for(self, key: str, timeout: float = WAIT_S) -> dict[str, str]:
        """The first message (from now) that has ``key``; fails after ``timeout``."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            msg = self.next(left)
            if msg is not None and key in msg:
                return msg
        raise AssertionError(f"no {key} within {timeout} s; got {self.messages[-5:]}")

    def close(self) -> None:
        self.sock.close()


def start(args: list[str], notify: NotifySocket | None, watchdog_s: float | None = None,
          log: Path | None = None) -> subprocess.Popen[bytes]:
    """``swarmdrive ARGS`` as a child process, systemd's variables set."""
    env = dict(os.environ)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    if watchdog_s is not None:
        env["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "agent", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill what a failed test left running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def write_config(folder: Path, **sections: str) -> Path:
    """A vehicle config in ``folder`` (its paths relative to it); ``sections`` replace or add
    TOML sections by name, e.g. ``serve='socket = "s.sock"'``."""
    base = {
        "vehicle": 'key_file = "vehicle.key"\nstate_dir = "state"',
        "chain": 'rpc_url = "http://127.0.0.1:9"\n'
                 'contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"',
        "serve": 'socket = "serve.sock"',
    } | sections
    path = folder / "vehicle.toml"
    path.write_text("".join(f"[{name}]\n{body}\n\n" for name, body in base.items() if body))
    return path
