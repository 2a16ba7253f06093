"""Running the vehicle's daemons as real processes under a notify socket the test owns, as
systemd would run them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


def wait_until(pred: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``pred`` until it holds; fail naming ``what`` after ``timeout`` (a hang guard)."""
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_pings_stop_while_stopped(proc: subprocess.Popen[bytes], notify: NotifySocket,
                                    interval_s: float) -> None:
    """SIGSTOP ``proc``: once what it sent before is drained, no message for three of its
    watchdog intervals; SIGCONT: the pings come back."""
    proc.send_signal(signal.SIGSTOP)
    wait_until(lambda: _state(proc.pid) == "T", "the process to stop")
    while notify.next(timeout=0) is not None:  # what it sent before it stopped
        pass
    assert notify.next(timeout=3 * interval_s) is None
    proc.send_signal(signal.SIGCONT)
    notify.wait_for("WATCHDOG")


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


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


def mosquitto_sub(port: int, log: Path) -> subprocess.Popen[bytes]:
    """mosquitto's own client, writing every ``swarmdrive/#`` message to ``log`` as
    ``TOPIC PAYLOAD`` lines."""
    with open(log, "wb") as out:
        return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
                                 "-t", "swarmdrive/#", "-v"], stdout=out,
                                stderr=subprocess.STDOUT)
