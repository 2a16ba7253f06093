"""Scenarios: the file's checks, and the smallest scenario run as a user runs it, ending in a
report whose plots exist and show something."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config.schema import ConfigError
from sim.report import round_time_table
from sim.scenario import load

SCENARIOS = sorted(Path(__file__).parents[2].joinpath("scenarios").glob("*.toml"))
GOOD = 'name = "t"\n[fleet]\nvehicles = 3\nrounds = 5\n'


def scenario_problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(path)
    return str(e.value)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_shipped_scenarios_are_valid(path):
    sc = load(path)
    assert sc.name == path.stem and sc.events


@pytest.mark.parametrize(("events", "words"), [
    ('at_round = 1\naction = "restart"\nvehicle = 0', "vehicle 0 is restarted but was not "
                                                     "killed"),
    ('at_round = 5\naction = "kill"\nvehicle = 0', "never fires: the run ends after 5 rounds"),
    ('at_round = 1\naction = "kill"\nvehicle = 3', "names vehicle 3; the fleet has 3"),
    ('at_round = 1\naction = "rpc_down"', "rpc_down needs seconds = S"),
    ('at_round = 1\naction = "kill"', "kill needs vehicle = N"),
    ('at_round = 1\naction = "explode"', "events.0.action"),
    ('at_round = 1\naction = "kill"\nvehicle = 0\nwhen = 3', "events.0.when: unknown key"),
    ('at_round = 1\naction = "kill"\nvehicle = 0\n[[events]]\nat_round = 2\n'
     'action = "byzantine"\nvehicle = 0', "vehicle 0 turns byzantine while it is killed"),
    ('at_round = 1\naction = "publish"', 'publish needs a fleet that serves releases'),
])
def test_a_scenario_that_cannot_run_is_refused_naming_the_problem(tmp_path, events, words):
    assert words in scenario_problems(tmp_path, f"{GOOD}\n[[events]]\n{events}\n")


@pytest.mark.parametrize(("events", "words"), [
    ('at_round = 1\naction = "revoke"', "revoke needs version = N"),
    ('at_round = 1\naction = "revoke"\nversion = 1', "release 1 is revoked before it is "
                                                     "published (0 published by round 1)"),
    ('at_round = 1\naction = "publish"\n[[events]]\nat_round = 2\naction = "revoke"\n'
     'version = 1\n[[events]]\nat_round = 3\naction = "revoke"\nversion = 1',
     "release 1 is revoked twice"),
    ('at_round = 1\naction = "publish"\nversion = 1', "publish takes no version"),
])
def test_release_events_are_checked_against_the_releases_before_them(tmp_path, events, words):
    text = GOOD.replace("[fleet]\n", '[fleet]\nota = "release"\n')
    assert words in scenario_problems(tmp_path, f"{text}\n[[events]]\n{events}\n")


def test_a_registered_vehicle_can_be_killed_and_bad_toml_is_named(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(GOOD + '[[events]]\nat_round = 1\naction = "register"\n'
                    '[[events]]\nat_round = 2\naction = "kill"\nvehicle = 3\n')
    assert [e.action for e in load(path).ordered_events()] == ["register", "kill"]
    assert "not valid TOML" in scenario_problems(tmp_path, "name = ")


def test_the_round_time_table_leaves_the_waiting_to_what_the_parts_do_not_fill():
    reports = [{"round": 0, "train_s": 1.0, "exchange_s": 0.5, "merge_s": 0.25, "commit_s": 0.0,
                "round_s": 3.0},
               {"round": 0, "train_s": 3.0, "exchange_s": 0.5, "merge_s": 0.25, "commit_s": 1.0,
                "round_s": 4.0},
               {"round": 1, "train_s": 2.0, "exchange_s": 1.0, "merge_s": 1.0, "commit_s": 1.0,
                "round_s": 4.5}]
    table = round_time_table({"round_reports": reports})
    assert table[0] == {"train_s": 2.0, "exchange_s": 0.5, "merge_s": 0.25, "commit_s": 0.5,
                        "waiting_s": 0.625}  # (1.25 + 0.0) / 2
    assert table[1]["waiting_s"] == 0.0  # never negative


def test_running_needs_an_out_folder():
    got = subprocess.run([sys.executable, "-m", "agent", "scenario", str(SCENARIOS[0])],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "--out DIR" in got.stderr and "Traceback" not in got.stderr


def run_scenario(name: str, out: Path) -> subprocess.CompletedProcess[str]:
    """``swarmdrive scenario scenarios/NAME.toml --out OUT``, which must succeed."""
    got = subprocess.run([sys.executable, "-m", "agent", "scenario", f"scenarios/{name}.toml",
                          "--out", str(out)], capture_output=True, text=True, timeout=900,
                         cwd=Path(__file__).parents[2])
    assert got.returncode == 0, got.stderr[-3000:]
    return got


@pytest.mark.slow
def test_the_smoke_scenario_recovers_from_every_event_and_reports_it(tmp_path):
    out = tmp_path / "run"
    got = run_scenario("smoke", out)
    summary = json.loads(got.stdout.strip().splitlines()[-1])
    result = json.loads((out / "result.json").read_text())
    assert summary["all_serve_expected"] and result["final"]["all_serve_expected"]
    assert len(result["rounds"]) == 6 and len(result["vehicles"]) == 4  # one registered
    assert [e["what"] for e in result["events"]] == [
        "kill vehicle 2", "broker down 4 s", "register a new vehicle", "restart vehicle 2",
        "RPC node down 4 s", "vehicle 1 turns byzantine (sign_flip)"]
    assert all(e["recovery_s"] is not None and e["recovery_s"] >= 0 for e in result["events"])
    # Every vehicle, the registered one too, served a model that was scored, and learning
    # happened: the last round's model beats the genesis one.
    scored = {a["vehicle"] for a in result["accuracy"]}
    assert scored == {0, 1, 2, 3}
    first = min(result["accuracy"], key=lambda a: (a["round"], a["t"]))
    last = max(result["accuracy"], key=lambda a: (a["round"], a["t"]))
    assert last["accuracy"] > first["accuracy"]
    assert any(m.get("bytes_received", 0) > 0 for m in result["round_reports"])
    # The liar was the real daemon under vehicle 1's key, and it took part.
    liar = (out / "fleet" / "vehicle-1" / "learn.log").read_text()
    assert liar.count("learner_ready") == 2 and "trained round=" in liar.rsplit(
        "learner_ready", 1)[1]
    # The page is self-contained and holds the four plots, each a real picture.
    page = (out / "report" / "index.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    assert "http://" not in page and "https://" not in page
    for name in ("accuracy", "bytes", "round_time", "timeline"):
        img = cv2.imread(str(out / "report" / f"{name}.png"))
        assert img is not None and img.shape[0] > 200 and img.shape[1] > 400
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # lines and text, not blank
    # A real browser opens it without a console message and decodes all four plots.
    dom, console = open_in_browser(out / "report" / "index.html", tmp_path / "browser")
    assert console == [] and 'data-plots="4"' in dom


@pytest.mark.slow
def test_vehicles_follow_the_operators_releases_as_a_scenario_publishes_and_revokes(tmp_path):
    out = tmp_path / "run"
    run_scenario("ota", out)
    result = json.loads((out / "result.json").read_text())
    assert [e["what"] for e in result["events"]] == [
        "publish release 1", "publish release 2", "revoke release 2"]
    assert all(e["recovery_s"] is not None for e in result["events"])
    # Release 1's file is what every vehicle serves at the end, checked against the mirror.
    r1 = hashlib.sha256((out / "fleet" / "releases" / "r1.onnx").read_bytes()).hexdigest()
    final = result["final"]
    assert final["all_serve_expected"] and final["expected"] == "release 1"
    assert set(final["serving"].values()) == {r1}
    # Each vehicle served the factory model, release 1, release 2, then release 1 again.
    for v in range(3):
        served = [a["round"] for a in sorted(result["accuracy"], key=lambda a: a["t"])
                  if a["vehicle"] == v]
        assert served == [0, 1, 2, 1], (v, served)
    page = (out / "report" / "index.html").read_text()
    assert "revoke release 2" in page and "every running vehicle serves release 1" in page


def open_in_browser(page: Path, profile: Path) -> tuple[str, list[str]]:
    """Headless Chromium's DOM of ``page`` after it loaded, and its console lines ('make
    test' installs Debian's chromium; these flags keep it off the network)."""
    got = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", page.absolute().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    return got.stdout, [line for line in got.stderr.splitlines() if ":CONSOLE" in line]
