"""``swarmdrive serve`` as a real process under a notify socket the test owns: readiness,
watchdog, clean stop, model switches under load, and refused configs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from agent.serve import installed
from agent.serve.client import ServeClient, ServeError
from models.checkpoint import state_hash
from models.net import CropNet, NetConfig
from models.onnx_export import to_onnx
from sim.world import CLASSES
from tests.agent.daemons import (
    WAIT_S,
    NotifySocket,
    assert_pings_stop_while_stopped,
    start,
    stop,
    write_config,
)

STOP_S = 5.0  # the bound for SIGTERM to exit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_model() -> tuple[bytes, str]:
    torch.manual_seed(1)
    model = CropNet(NetConfig())
    return to_onnx(model, tuple(CLASSES)).SerializeToString(), state_hash(model.state_dict())


@pytest.fixture
def vehicle(tmp_path: Path):
    notify = NotifySocket(tmp_path / "notify")
    cfg = write_config(tmp_path)
    yield cfg, tmp_path / "state", tmp_path / "serve.sock", notify
    notify.close()


def connect(sock: Path) -> ServeClient:
    """A client, once the service has its socket open."""
    end = time.monotonic() + WAIT_S
    while True:
        try:
            return ServeClient(sock)
        except ServeError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_serve_imports_no_torch_libp2p_or_web3():
    code = ("import sys, agent.cli, agent.commands.serve, agent.serve.server, "
            "agent.config.checks, agent.serve.client; "
            "print(sorted({'torch', 'libp2p', 'web3'} & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_ready_after_a_model_watchdog_while_alive_stopping_on_sigterm(trained, vehicle):
    cfg, state, sock, notify = vehicle
    proc = start(["serve", "--config", str(cfg)], notify, watchdog_s=1.0)
    try:
        with connect(sock) as c, pytest.raises(ServeError, match="no_model"):
            c.info()
        assert not any("READY" in m for m in notify.messages)

        installed.install(state, trained.onnx.read_bytes(), trained.model_hash, 3, "round")
        ready = notify.wait_for("READY")
        assert "serving model" in ready["STATUS"]
        with connect(sock) as c:
            info = c.info()["model"]
            assert (info["hash"], info["version"], info["classes"]) == (
                trained.model_hash, 3, list(CLASSES))
        notify.wait_for("WATCHDOG")
        proc.send_signal(signal.SIGHUP)  # looks for a new model at once; serves on
        notify.wait_for("WATCHDOG")

        assert_pings_stop_while_stopped(proc, notify, interval_s=1.0)  # a hung process

        proc.send_signal(signal.SIGTERM)
        assert "STOPPING" in notify.wait_for("STOPPING")
        assert proc.wait(STOP_S) == 0
        assert not sock.exists()
    finally:
        stop(proc)


def test_a_switch_under_load_loses_no_request(trained, vehicle, second_model):
    cfg, state, sock, notify = vehicle
    installed.install(state, trained.onnx.read_bytes(), trained.model_hash, 1, "round")
    proc = start(["serve", "--config", str(cfg)], notify)
    new_onnx, new_hash = second_model
    frame = trained.data.images[0]
    seen: list[list[str]] = [[], []]
    errors: list[Exception] = []
    done = threading.Event()

    def client(k: int) -> None:
        try:
            with connect(sock) as c:
                while not done.is_set():
                    answer = c.frame(frame, np.array([[2, 2, 30, 30]], np.float32))
                    assert len(answer["objects"]) == 1
                    seen[k].append(answer["model"]["hash"])
        except Exception as e:
            errors.append(e)

    try:
        notify.wait_for("READY")
        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        end = time.monotonic() + WAIT_S
        while min(len(s) for s in seen) < 50 and not errors and time.monotonic() < end:
            time.sleep(0.01)
        installed.install(state, new_onnx, new_hash, 2, "round")
        while (min(s.count(new_hash) for s in seen) < 50 and not errors
               and time.monotonic() < end):
            time.sleep(0.01)
        done.set()
        for t in threads:
            t.join(WAIT_S)
        assert errors == []
        for s in seen:  # every request answered; the old model until the switch, then the new
            switch = s.index(new_hash)
            assert set(s[:switch]) == {trained.model_hash} and set(s[switch:]) == {new_hash}
    finally:
        done.set()
        stop(proc)


def test_clients_that_reset_their_connection_do_not_end_the_service(trained, vehicle):
    import socket
    import struct

    from agent.serve.protocol import Kind, encode_request

    cfg, state, sock, notify = vehicle
    installed.install(state, trained.onnx.read_bytes(), trained.model_hash, 1, "round")
    proc = start(["serve", "--config", str(cfg)], notify)
    frame = np.zeros((480, 640, 3), np.uint8)  # a big answer is still being written at the reset
    request = encode_request(1, Kind.FRAME, frame, np.array([[2, 2, 30, 30]] * 50, np.float32))
    try:
        notify.wait_for("READY")
        connect(sock).close()
        for _ in range(30):  # ask, then reset at once: the answer meets a broken connection
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(sock))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(request)
            s.close()
        with connect(sock) as c:
            answer = c.frame(trained.data.images[0], np.array([[2, 2, 30, 30]], np.float32))
        assert answer["ok"] and proc.poll() is None
    finally:
        stop(proc)


def test_a_bad_model_is_refused_and_the_old_one_keeps_serving(trained, vehicle, tmp_path):
    cfg, state, sock, notify = vehicle
    installed.install(state, trained.onnx.read_bytes(), trained.model_hash, 1, "round")
    log = tmp_path / "serve.log"
    proc = start(["serve", "--config", str(cfg)], notify, log=log)
    try:
        notify.wait_for("READY")
        installed.install(state, b"not an onnx model", "ab" * 32, 2, "round")
        end = time.monotonic() + WAIT_S
        while "model_rejected" not in log.read_text() and time.monotonic() < end:
            time.sleep(0.05)
        assert "not an ONNX model" in log.read_text()
        with connect(sock) as c:
            assert c.info()["model"]["hash"] == trained.model_hash
        pointer = json.loads((installed.serve_dir(state) / installed.POINTER).read_text())
        assert pointer["active"]["version"] == 2  # it stays: the learner decides what is next
    finally:
        stop(proc)


def test_a_changed_active_file_is_caught_at_start_and_the_standby_serves(trained, vehicle,
                                                                         tmp_path):
    cfg, state, sock, notify = vehicle
    good = installed.install(state, trained.onnx.read_bytes(), trained.model_hash, 1, "release")
    proto = onnx.load(trained.onnx)
    proto.doc_string = "another build of the same weights"
    installed.install(state, proto.SerializeToString(), trained.model_hash, 2, "release")
    bad = installed.current(state)
    assert bad is not None and installed.pointer(state).standby == good
    path = installed.model_path(state, bad)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")  # one byte flipped at rest
    log = tmp_path / "serve.log"
    proc = start(["serve", "--config", str(cfg)], notify, log=log)
    try:
        notify.wait_for("READY")
        with connect(sock) as c:
            assert c.info()["model"]["sha256"] == good.sha256
        assert "sha256" in log.read_text() and "model_rejected" in log.read_text()
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def detector_model() -> tuple[bytes, str]:
    """An untrained FrameNet, exported: its peaks score ~1%, so the test's threshold is lower."""
    from models.detector import DetConfig, FrameNet

    torch.manual_seed(0)
    model = FrameNet(DetConfig())
    model.eval()
    return to_onnx(model, tuple(CLASSES)).SerializeToString(), state_hash(model.state_dict())


def test_a_detector_answers_a_frame_with_the_objects_it_finds(trained, detector_model, tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    cfg = write_config(tmp_path, serve='socket = "serve.sock"\nmin_score = 0.005')
    state, sock = tmp_path / "state", tmp_path / "serve.sock"
    installed.install(state, trained.onnx.read_bytes(), trained.model_hash, 1, "round")
    proc = start(["serve", "--config", str(cfg)], notify, watchdog_s=1.0)
    try:
        notify.wait_for("READY")
        with connect(sock) as c:
            assert c.info()["model"]["task"] == "classify"
            data, model_hash = detector_model
            installed.install(state, data, model_hash, 2, "round")  # the fleet moves to boxes
            end = time.monotonic() + WAIT_S
            while c.info()["model"]["hash"] != model_hash and time.monotonic() < end:
                time.sleep(0.05)
            info = c.info()["model"]
            assert (info["task"], info["frame_size"], info["classes"]) == (
                "detect", [320, 240], list(CLASSES))
            frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
            answer = c.frame(frame)
            objects = answer["objects"]
            assert answer["model"]["hash"] == model_hash and 0 < len(objects) <= 100
            scores = [o["score"] for o in objects]
            assert scores == sorted(scores, reverse=True) and min(scores) >= 0.005
            for o in objects:  # boxes in the frame's own pixels, named by the model's classes
                x0, y0, x1, y1 = o["box"]
                assert 0 <= x0 <= x1 <= 640 and 0 <= y0 <= y1 <= 480
                assert o["class"] == CLASSES[o["class_id"]]
            with pytest.raises(ServeError, match="detector"):
                c.crops(trained.data.images[:2])
            with pytest.raises(ServeError, match="unsupported"):
                c.frame(frame, np.array([[2, 2, 30, 30]], np.float32))
            assert c.info()["model"]["hash"] == model_hash  # the connection stays open
        notify.wait_for("WATCHDOG")  # the probe runs a frame through the detector
    finally:
        stop(proc)
        notify.close()


@pytest.mark.parametrize(("sections", "words"), [
    ({"serve": 'socket = "serve.sock"\nbogus = 1'}, "serve.bogus: unknown key"),
    ({"serve": "socket = 5"}, "serve.socket: Input is not a valid path"),
    ({"vehicle": 'key_file = "k"\nstate_dir = "/proc/swarmdrive"'},
     "vehicle.state_dir: /proc/swarmdrive is not a folder this user can write"),
])
def test_a_bad_config_gives_one_line_and_the_config_code(tmp_path, sections, words):
    cfg = write_config(tmp_path, **sections)
    out = subprocess.run([sys.executable, "-m", "agent", "serve", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=WAIT_S)
    assert out.returncode == 14, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in out.stderr
