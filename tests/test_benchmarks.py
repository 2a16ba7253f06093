"""The learning benchmark split into parts gives the figures of one whole run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from models.train import native_bf16

TINY = ["--rounds", "2", "--local-steps", "1", "--frames", "8"]


def learning(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.learning", *TINY, *map(str, args)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SWARMDRIVE_THREADS": "1"})


def figures(r: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    del out["seconds"]  # the one figure that differs from run to run
    return out


def test_arms_run_apart_give_the_figures_of_one_run(tmp_path: Path) -> None:
    whole = figures(learning("--arms", "dense,central"))
    results = tmp_path / "results.json"
    first = figures(learning("--arms", "dense", "--results", results))
    assert first["missing"] == ["compressed", "local", "central"]
    assert "central_acc" not in first
    second = figures(learning("--arms", "central", "--results", results))
    assert second == whole  # dense read back from the file, central run now
    assert second["missing"] == ["compressed", "local"]
    assert set(json.loads(results.read_text())["arms"]) == {"dense", "central"}
    # Done arms are not run again: nothing to do, the same figures.
    assert figures(learning("--arms", "dense", "--results", results)) == whole


def test_results_of_other_settings_are_refused(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(
        {"arms": {"central": {"scores": [0.5], "seconds": 1.0, "settings": {"rounds": 3}}}}))
    r = learning("--arms", "central", "--results", results)
    assert r.returncode != 0
    assert f"--results {results}: holds central figures for other settings" in r.stderr
    assert "rounds" in r.stderr and "Traceback" not in r.stderr
    results.write_text("not json")
    r = learning("--arms", "central", "--results", results)
    assert r.returncode != 0 and "not a results file of this benchmark" in r.stderr


def test_baselines_serve_a_run_that_changes_only_how_the_swarm_trains(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    plain = figures(learning("--arms", "central,compressed", "--results", results))
    r = learning("--fleet-momentum", "--arms", "dense,central,compressed", "--results", results)
    momentum = figures(r)
    # Read back, not trained again: fleet momentum is the dense swarm's alone.
    assert "central:" not in r.stderr and "compressed:" not in r.stderr
    assert momentum["central_acc"] == plain["central_acc"]
    assert momentum["swarm_compressed_acc"] == plain["swarm_compressed_acc"]
    assert momentum["fleet_momentum"] is True and "swarm_dense_acc" in momentum
    # The dense arm in the file ran with fleet momentum: not this run's, and not overwritten.
    r = learning("--arms", "dense", "--results", results)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "holds dense figures for other settings (differ in fleet_momentum)" in r.stderr
    r = learning("--arms", "central", "--results", results)
    assert "swarm_dense_acc" not in figures(r) and "dense in" in r.stderr
    assert set(json.loads(results.read_text())["arms"]) == {"dense", "central", "compressed"}


def test_an_unwritable_results_file_is_refused_before_any_arm_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = learning("--arms", "central", "--results", blocker / "results.json")
    assert r.returncode == 2 and "--results" in r.stderr and "Traceback" not in r.stderr
    assert "central:" not in r.stderr  # refused before training


def test_lookahead_is_the_compressed_swarms_alone(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    plain = figures(learning("--arms", "dense,central", "--results", results))
    r = learning("--lookahead", "5", "--arms", "dense,central", "--results", results)
    ahead = figures(r)
    assert "dense:" not in r.stderr and "central:" not in r.stderr  # read back, not trained
    assert ahead["swarm_dense_acc"] == plain["swarm_dense_acc"] and ahead["lookahead"] == 5.0
    for bad in ("-1", "inf", "nan"):
        r = learning("--lookahead", bad, "--arms", "central")
        assert r.returncode == 2 and f"--lookahead {float(bad)}" in r.stderr
        assert "Traceback" not in r.stderr


def test_bf16_runs_only_where_the_cpu_computes_it() -> None:
    r = learning("--bf16", "--arms", "central")
    if native_bf16():
        assert figures(r)["bf16"] is True
    else:  # emulated bfloat16 would take ten times as long: refused before any work
        assert r.returncode == 2 and "--bf16: this CPU has neither" in r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
