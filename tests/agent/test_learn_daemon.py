"""``swarmdrive learn`` as a real process on a real chain (anvil), under a notify socket the
test owns: READY after joining, WATCHDOG while it trains, none while it is stopped, STOPPING
and exit 0 on SIGTERM with its checkpoint intact; and label folders taken in as they fill."""

from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.learn.buffer import NAME
from agent.learn.daemon import BufferedLearner
from agent.swarm.driver import load_vehicle_checkpoint
from chain.ledger import ChainParams
from models.codec import CodecConfig
from models.family import CLASSIFIER
from models.train import TrainConfig
from sim.procfleet import ProcessFleet
from tests.agent.daemons import NotifySocket, assert_pings_stop_while_stopped, wait_until

pytestmark = pytest.mark.slow

STOP_S = 5.0  # the bound for SIGTERM to exit
ALONE = ChainParams(min_peers=1, quorum=1, round_timeout=30, fallback_slot=10,
                    finalize_window=20)
QUICK = "local_steps = 5\nmin_samples = 16\ncpu_share = 1.0\nschedule_rounds = 50"


def test_learner_ready_watchdog_sigstop_and_a_clean_stop(anvil, tmp_path):
    fleet = ProcessFleet.create(tmp_path, anvil.url, 1, ALONE,
                                training=QUICK + "\nlookahead = 2.0")
    v = fleet.vehicles[0]
    notify = NotifySocket(tmp_path / "notify")
    ledger = fleet.ledger()
    proc = fleet.start("learn", 0, env={"NOTIFY_SOCKET": str(notify.path),
                                        "WATCHDOG_USEC": "2000000"})
    try:
        ready = notify.wait_for("READY")
        log = (v.folder / "learn.log").read_text()
        assert "vehicle_joined" in log  # it had read the chain before it said so
        assert "round -1" in ready["STATUS"] or "round 0" in ready["STATUS"]

        wait_until(lambda: ledger.status().rounds_final >= 2, "two final rounds")
        pings = [notify.wait_for("WATCHDOG") for _ in range(3)]  # while it trains on
        assert all("samples buffered" in p["STATUS"] for p in pings)
        wait_until(lambda: ledger.status().rounds_final >= 3, "a third round")

        assert_pings_stop_while_stopped(proc, notify, interval_s=1.0)  # a hung process

        smaller = "[buffer]\nmax_samples = 100\n\n[training]"
        v.config.write_text(v.config.read_text().replace("[training]", smaller))
        proc.send_signal(signal.SIGHUP)  # reloads the buffer's limits
        assert "MONOTONIC_USEC" in notify.wait_for("RELOADING")
        notify.wait_for("READY")
        assert "reloaded max_samples=100" in (v.folder / "learn.log").read_text()

        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING")
        assert proc.wait(STOP_S) == 0
        learner = BufferedLearner(*_learner_args(v.state))
        round_, _ = load_vehicle_checkpoint(v.state / "learner.ckpt", learner)
        assert round_ >= 2
        assert learner.state()["trend"] is not None  # the config's lookahead reached the learner
        assert (v.state / "serve" / "current.json").exists()  # a model installed for serving
    finally:
        fleet.stop_all()
        notify.close()


def _learner_args(state: Path) -> tuple[object, ...]:
    from agent.learn.buffer import SampleBuffer

    buffer = SampleBuffer(state / "buffer", CLASSIFIER, 1000, 3600, 0.1)
    return (buffer, 1, 1.0, TrainConfig(), CodecConfig(0.1, 8), 100, 0)


def _labelled_image(rng: np.random.Generator) -> tuple[bytes, str]:
    img = rng.integers(0, 256, (64, 64, 3), np.uint8)
    ok, png = cv2.imencode(".png", img)
    assert ok
    return png.tobytes(), "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.2 0.2\n"


def buffered(state: Path) -> int:
    return sum(int(m[3]) for p in (state / "buffer").iterdir() if (m := NAME.fullmatch(p.name)))


def test_a_label_folder_is_taken_in_as_it_fills(anvil, tmp_path):
    fleet = ProcessFleet.create(tmp_path, anvil.url, 1, ALONE,
                                training=QUICK.replace("min_samples = 16", "min_samples = 8"))
    v = fleet.vehicles[0]
    labels = tmp_path / "labels"
    labels.mkdir()
    text = v.config.read_text()
    start = text.index("[[sources]]")
    v.config.write_text(text[:start] + f'[[sources]]\nname = "folder"\nuri = "{labels}"\n\n'
                        + "[buffer]\nheld_out = 0.0\n\n" + text[text.index("[training]"):])
    rng = np.random.default_rng(0)
    fleet.start("learn", 0)
    log = v.folder / "learn.log"
    try:
        wait_until(lambda: "learner_ready" in log.read_text(), "the learner")
        assert buffered(v.state) == 0
        for i in range(3):  # a pipeline writes under a temporary name, then renames
            png, txt = _labelled_image(rng)
            (labels / f"f{i}.txt").write_text(txt)
            (labels / f".f{i}.png.tmp").write_bytes(png)
            (labels / f".f{i}.png.tmp").rename(labels / f"f{i}.png")
        wait_until(lambda: buffered(v.state) == 6, "six crops buffered")

        png, txt = _labelled_image(rng)
        (labels / "half.txt").write_text(txt)
        (labels / "half.png.part").write_bytes(png[: len(png) // 2])  # still being written
        (labels / "bad.txt").write_text(txt)
        (labels / "bad.png").write_bytes(b"\x89PNG but not really")  # corrupt: skipped
        wait_until(lambda: "intake_skipped" in log.read_text(), "the corrupt file skipped")
        assert buffered(v.state) == 6 and "half" not in log.read_text()
        (labels / "half.png.part").write_bytes(png)
        (labels / "half.png.part").rename(labels / "half.png")
        wait_until(lambda: buffered(v.state) == 8, "the finished file taken in")
        assert "bad.png" in log.read_text() and log.read_text().count("intake_skipped") == 1
        wait_until(lambda: "trained round" in log.read_text(), "training on the 8 crops")
    finally:
        fleet.stop_all()


def test_a_detector_fleet_learns_frames_and_installs_a_detector(anvil, tmp_path):
    """``training.model = "detector"``: whole frames buffered, FrameNet trained and merged, and
    each final round's detector exported and installed for the inference service."""
    from agent.serve import installed
    from models.runtime import OnnxDetector, open_model

    fleet = ProcessFleet.create(tmp_path, anvil.url, 1, ALONE, model="detector",
                                training="local_steps = 2\nmin_samples = 4\ncpu_share = 1.0\n"
                                         "batch_size = 4\nschedule_rounds = 50")
    v = fleet.vehicles[0]
    ledger = fleet.ledger()
    fleet.start("learn", 0)
    try:
        wait_until(lambda: ledger.status().rounds_final >= 2, "two final rounds")
        wait_until(lambda: (e := installed.current(v.state)) is not None and e.version >= 1,
                   "round 1's model installed")
        entry = installed.current(v.state)
        assert entry is not None
        net = open_model(installed.model_path(v.state, entry))
        assert isinstance(net, OnnxDetector) and net.info.frame_size == (320, 240)
        assert net.info.model_hash == ledger.round_model(entry.version).hex()
        log = (v.folder / "learn.log").read_text()
        assert "held_out_map50=" in log
        chunks = [p for p in (v.state / "buffer").iterdir() if NAME.fullmatch(p.name)]
        with np.load(chunks[0]) as z:  # a whole frame at the detector's size, with its boxes
            assert z["images"].shape == (1, 240, 320, 3) and z["boxes"].shape[1] == 4
    finally:
        fleet.stop_all()
