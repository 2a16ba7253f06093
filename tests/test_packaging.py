"""The wheel carries everything the installed package needs at run time, and works installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_finds_its_data(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "*.egg-info", "__pycache__", ".*_cache", "out"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", tmp_path / "dist", src, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("swarmdrive-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    py = env / "bin" / "python"
    # The wheel alone, without its dependencies: they come from this interpreter's site-packages
    # through a .pth file, so the test needs no network and no second torch.
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel,
        cwd=tmp_path)
    r = run(env / "bin" / "swarmdrive", "chain", "status", "--help", cwd=tmp_path)
    assert "--contract" in r.stdout
    r = run(py, "-c", "import chain.compile as c; a = c.load_artifact(); "
            "print(c.__file__); print(len(a['abi']), a['bytecode'][:2])", cwd=tmp_path)
    where, sizes = r.stdout.splitlines()
    assert Path(where).is_relative_to(site), where  # the installed copy, not the checkout
    assert int(sizes.split()[0]) > 10 and sizes.split()[1] == "0x"
    r = run(env / "bin" / "swarmdrive", "--help", cwd=tmp_path)
    assert "sim" in r.stdout and "render" in r.stdout  # the simulator's entry points
