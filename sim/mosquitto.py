"""A mosquitto broker process on 127.0.0.1 (Debian's ``mosquitto``), for the tests and the
simulated fleet. In memory, anonymous unless told otherwise: a test broker, not a fleet's."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from chain.launch import free_port

START_TIMEOUT_S = 30.0


class BrokerError(Exception):
    """mosquitto is missing or did not start; the message says which."""


class Mosquitto:
    def __init__(self, folder: Path, port: int | None = None,
                 listener: str = "allow_anonymous true") -> None:
        """``listener``: mosquitto.conf lines for the listener (TLS files, password file)."""
        self.folder, self.port, self.listener = folder, port or free_port(), listener
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        path = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
        if path is None:
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto; "
                              "'make test' installs it)")
        return path

    def start(self) -> Mosquitto:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        # As root, mosquitto would switch to its own user, who cannot read our files.
        stay = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{stay}listener {self.port} 127.0.0.1\n{self.listener}\n"
                        "persistence false\nlog_dest stderr\nlog_type error\n"
                        "log_type warning\n")
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115  # the child owns it
        try:
            self._proc = subprocess.Popen([self.binary(), "-c", str(conf)], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}; see "
                                  f"{self.folder / 'mosquitto.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} "
                          f"within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
