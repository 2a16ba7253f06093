"""The units in systemd/: what the issue asks of them, ``systemd-analyze verify`` clean, and
``systemd-analyze security --offline=yes`` exposure at most 2.0 (where systemd-analyze is)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
NAMES = ("swarmdrive-serve.service", "swarmdrive-learn.service")
INSTALLED_BINARY = "/opt/swarmdrive/bin/swarmdrive"  # where systemd/install.sh puts it
MAX_EXPOSURE = 2.0


def service(name: str) -> dict[str, list[str]]:
    """The unit's [Service] keys, each with all its values (a key may repeat)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       dict_type=_MultiDict)  # type: ignore[arg-type]
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return {k: v.split("\n") for k, v in parser["Service"].items()}


class _MultiDict(dict):  # type: ignore[type-arg]
    """Keeps every value of a repeated key, as systemd does, joined by newlines."""

    def __setitem__(self, key: str, value: object) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


@pytest.mark.parametrize("name", NAMES)
def test_each_unit_has_what_a_vehicle_service_needs(name):
    s = service(name)
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert s["User"] == ["swarmdrive"] and s["StateDirectory"] == ["swarmdrive"]
    assert s["ConfigurationDirectory"] == ["swarmdrive"] and "WatchdogSec" in s
    assert s["ExecStart"][0].startswith(INSTALLED_BINARY + " ")
    for key in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp", "RestrictAddressFamilies",
                "SystemCallFilter", "CapabilityBoundingSet"):
        assert key in s, key
    assert s["ProtectSystem"] == ["strict"] and "@system-service" in s["SystemCallFilter"]
    assert "14" in s["RestartPreventExitStatus"][0].split()  # a bad config is not retried


def test_the_learner_yields_to_the_server_in_every_scheduler():
    serve, learn = service(NAMES[0]), service(NAMES[1])
    assert int(learn["CPUWeight"][0]) < int(serve["CPUWeight"][0])
    assert int(learn["IOWeight"][0]) < int(serve["IOWeight"][0])
    assert int(learn["Nice"][0]) > int(serve["Nice"][0])
    assert learn["IOSchedulingClass"] == ["idle"]
    assert serve["RestrictAddressFamilies"] == ["AF_UNIX"]  # serving needs no network


def runnable_copy(name: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's swarmdrive (verify wants it to
    exist); nothing else changed."""
    exe = Path(sys.executable).parent / "swarmdrive"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the package (make install)")
    text = (UNITS / name).read_text().replace(INSTALLED_BINARY, str(exe))
    out = tmp_path / name
    out.write_text(text)
    return out


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


@needs_analyze
@pytest.mark.parametrize("name", NAMES)
def test_systemd_analyze_verify_passes(name, tmp_path):
    out = subprocess.run(["systemd-analyze", "verify", str(runnable_copy(name, tmp_path))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


@needs_analyze
@pytest.mark.parametrize("name", NAMES)
def test_exposure_is_at_most_2(name, tmp_path):
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                          str(runnable_copy(name, tmp_path))],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert m is not None, out.stdout[-500:] + out.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, out.stdout
