"""The simulator's plug-ins: its camera scheme and its subcommands' literal choices."""

from __future__ import annotations

import numpy as np
import pytest

from agent.camera.source import open_source
from models.classes import CLASSES
from models.merge import RULES
from sim.attacks import ATTACKS
from sim.commands import fleet
from sim.datasets import FRAME_STRIDE, domain_crops, fleet_test_set
from sim.fleet import FleetConfig
from sim.world import TOWNS, WEATHERS


def test_sim_command_choices_and_defaults_match_the_code():
    assert tuple(RULES) == fleet.RULE_NAMES
    assert fleet.ATTACK_NAMES == ATTACKS
    from agent.cli import build_parser

    args = build_parser().parse_args(["sim"])
    d = FleetConfig()
    assert (args.vehicles, args.rounds, args.local_steps, args.frames, args.model) == \
        (d.vehicles, d.rounds, d.local_steps, d.frames_per_weather, d.model)
    assert fleet.fleet_config(args).batch_size == d.batch_size  # the classifier's crops a step
    assert (args.density, args.bits) == (d.codec.density, d.codec.bits)
    from sim.netfleet import NetFleetConfig

    assert args.round_timeout == NetFleetConfig().round_timeout


def test_sim_detector_trains_at_the_daemons_detector_recipe():
    from agent.cli import build_parser
    from agent.config.schema import FAMILY_DEFAULTS

    cfg = fleet.fleet_config(build_parser().parse_args(["sim", "--model", "detector"]))
    want = FAMILY_DEFAULTS["detector"].recipe
    assert (cfg.batch_size, cfg.lr) == (want.batch_size, want.lr)
    cfg = fleet.fleet_config(build_parser().parse_args(
        ["sim", "--model", "detector", "--batch-size", "4"]))
    assert (cfg.batch_size, cfg.lr) == (4, want.lr)


def test_sim_trains_in_float32_unless_told_otherwise():
    from agent.cli import build_parser

    assert not fleet.fleet_config(build_parser().parse_args(["sim"])).bf16
    assert fleet.fleet_config(build_parser().parse_args(["sim", "--precision", "bf16"])).bf16


def test_every_domain_scheme_drives_each_domain_on_its_own_route():
    with open_source("sim:*/*?seed=3&n=2&stride=5", len(CLASSES)) as src:
        frames = list(src)
        assert src.statistics().frames == len(frames) == 2 * len(TOWNS) * len(WEATHERS)
    assert frames[0].origin.startswith("sim:Town01/ClearNoon?seed=3000#0")
    assert frames[1].origin.endswith("#5")  # the stride
    # The same crops as the datasets module's drive of that domain.
    crops = domain_crops("Town01", "ClearNoon", 3000, 2, 32)
    from models.data import crops_from_frames

    assert np.array_equal(crops_from_frames(frames[:2], 32).images, crops.images)


def test_test_split_is_the_fleet_test_set():
    from models.data import crops_from_frames

    with open_source(f"sim:*/*?seed=1&n=1&stride={FRAME_STRIDE}&split=test", 8) as src:
        ours = crops_from_frames(src, 32)
    assert np.array_equal(ours.images, fleet_test_set(1, 1, 32).images)


def test_town_wildcard_with_one_weather():
    with open_source("sim:*/ClearNight?n=1", 8) as src:
        origins = [f.origin for f in src]
    assert len(origins) == len(TOWNS) and all("/ClearNight?" in o for o in origins)


def test_sim_refuses_a_bad_out_before_it_says_anything_else(tmp_path, caplog):
    from agent.cli import build_parser
    from agent.commands.args import OutputPathError

    blocker = tmp_path / "file"
    blocker.write_text("")
    args = build_parser().parse_args(["sim", "--precision", "bf16", "--out", str(blocker)])
    with caplog.at_level("WARNING"), pytest.raises(OutputPathError, match="is a file"):
        fleet.run(args)
    assert not caplog.records  # not even bf16_emulated, on a CPU that emulates bfloat16
