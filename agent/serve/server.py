"""The inference service: answers serve-v1 requests on a Unix socket with the installed model.

Tasks, all owned by one nursery: the accept loop (one task per client, at most
``max_clients`` served at once), the model watcher (a new pointer -> load, check by hash,
switch), and the watchdog loop, which pings systemd only after a probe inference has gone
through the same worker threads as requests (a wedged model stops the pings).

A switch is one reference assignment: each request takes the model current when it starts
and finishes with it, so no request in flight fails or sees half of a switch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import stat
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import trio

from agent.config.schema import VehicleConfig
from agent.notify import Notifier
from agent.resources import cpu_s, rss_mb
from agent.serve import installed
from agent.serve.installed import Installed, PointerError
from agent.serve.protocol import (
    LENGTH,
    MAX_REQUEST,
    VERSION,
    BadRequest,
    Kind,
    Request,
    decode_request,
    encode_answer,
    error_answer,
)
from models.atomic import atomic_write_bytes
from models.errors import ModelFileError
from models.preprocess import crops, whole_image
from models.runtime import OnnxClassifier, OnnxDetector, open_model

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the pointer is looked at (a stat call)
IDLE_S = 300.0  # a client that sends nothing for this long is disconnected
READ_S = 10.0  # a request must arrive whole within this once its length has
WORKERS = 2  # inference threads, for requests over INLINE_BYTES
INLINE_BYTES = 16 * 32 * 32 * 3  # up to this many pixel bytes: inference on the loop itself
LATENCIES = 4096  # recent request latencies kept for p50/p99
STATS_FILE = "stats.json"
STATS_S = 5.0
HEALTH_KEPT = 4  # model files whose health figures the stats keep


class NonFiniteOutput(Exception):
    """The model answered NaN or infinity: a broken model, never a result to hand on."""


@dataclass
class ModelHealth:
    """How one model file has answered since it was first served: what OTA's health window
    judges (docs/spec/ota-v1.md)."""
    requests: int = 0
    errors: int = 0  # inferences that raised
    nonfinite: int = 0  # inferences with a NaN or infinite output
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES))

    def summary(self) -> dict[str, object]:
        _, p99 = percentiles(self.latencies_ms)
        return {"requests": self.requests, "errors": self.errors, "nonfinite": self.nonfinite,
                "p99_ms": None if math.isnan(p99) else round(p99, 3)}


class Unsupported(Exception):
    """A request the served model's task cannot answer (crops for a detector)."""


@dataclass(frozen=True)
class Loaded:
    net: OnnxClassifier | OnnxDetector
    entry: Installed

    def describe(self) -> dict[str, object]:
        e = self.entry
        return {"hash": e.model_hash, "version": e.version, "sha256": e.sha256,
                "source": e.source, "precision": self.net.info.precision,
                "task": self.net.info.task}

    def shape(self) -> dict[str, object]:
        """What INFO adds: the class names and the input the model takes."""
        info = self.net.info
        size: dict[str, object] = ({"frame_size": list(info.frame_size)} if info.task == "detect"
                                   else {"input_size": info.input_size})
        return {"classes": list(info.classes)} | size


class Server:
    """One vehicle's inference service."""

    def __init__(self, cfg: VehicleConfig, notifier: Notifier) -> None:
        self.cfg, self.notifier = cfg, notifier
        self.state_dir = cfg.vehicle.state_dir
        self.model: Loaded | None = None
        self.ready = trio.Event()
        self.requests = self.failures = self.switches = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCIES)
        self.health: dict[str, ModelHealth] = {}  # by model file sha256, the newest last
        self._pointer_seen: tuple[int, int, int] | None = None
        self._bad_pointer: tuple[int, int, int] | None = None
        self._clients = trio.Semaphore(cfg.serve.max_clients)
        self._workers = trio.CapacityLimiter(WORKERS)
        self._reload = trio.Event()

    # --- the model ------------------------------------------------------------------------------

    async def watch_model(self) -> None:
        """Switch to each newly installed model; keep the old one if the new one is bad."""
        while True:
            with trio.move_on_after(POLL_S):
                await self._reload.wait()
            self._reload = trio.Event()
            await self.check_pointer()

    def reload(self) -> None:
        """Look at the pointer now (SIGHUP)."""
        self._reload.set()

    async def check_pointer(self) -> None:
        path = installed.serve_dir(self.state_dir) / installed.POINTER
        try:
            st = path.stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return
        except OSError as e:
            log.error("model_pointer_unreadable path=%s error=%s", path, e.strerror)
            return
        if seen in (self._pointer_seen, self._bad_pointer):
            return
        try:
            pair = installed.pointer(self.state_dir)
        except PointerError as e:
            self._bad_pointer = seen
            log.error("model_rejected error=%s (still serving %s)", e, self._serving())
            return
        if pair is None:
            return
        # The active file, else the standby: after a crash or a changed file, serve what
        # still checks out rather than nothing.
        for entry in (pair.active, pair.standby):
            if entry is None:
                continue
            if self.model is not None and entry.sha256 == self.model.entry.sha256:
                self._pointer_seen = seen
                return
            try:
                net = await trio.to_thread.run_sync(
                    lambda e=entry: open_model(installed.model_path(self.state_dir, e),
                                               self.cfg.serve.threads, sha256=e.sha256))
            except ModelFileError as e:
                log.error("model_rejected error=%s (still serving %s)", e, self._serving())
                continue
            self._switch(Loaded(net, entry))
            self._pointer_seen = seen
            return
        self._bad_pointer = seen

    def _switch(self, new: Loaded) -> None:
        old, self.model = self.model, new
        self.switches += old is not None
        self.health.setdefault(new.entry.sha256, ModelHealth())
        while len(self.health) > HEALTH_KEPT:
            self.health.pop(next(iter(self.health)))
        e = new.entry
        log.info("model_switched hash=%s version=%s source=%s task=%s from=%s",
                 e.model_hash[:12], e.version, e.source, new.net.info.task,
                 old.entry.model_hash[:12] if old else "none")
        self.notifier.status(self.status_line())

    def _serving(self) -> str:
        return self.model.entry.model_hash[:12] if self.model else "nothing"

    # --- answering ------------------------------------------------------------------------------

    async def answer(self, req: Request) -> dict[str, object]:
        model = self.model  # this request's model, whatever is installed meanwhile
        if model is None:
            return error_answer(req.id, "no_model", "no model installed yet", None)
        t0 = time.perf_counter()
        health = self.health.setdefault(model.entry.sha256, ModelHealth())
        try:
            if req.kind == Kind.INFO:
                objects: list[dict[str, object]] = []
            elif req.pixels.size <= INLINE_BYTES:
                # A few crops take well under a millisecond: handing them to a thread would
                # cost two more wake-ups, each of which can wait behind the learner for a time
                # slice.
                objects = _infer(model.net, req, self.cfg.serve.min_score)
            else:
                objects = await trio.to_thread.run_sync(_infer, model.net, req,
                                                        self.cfg.serve.min_score,
                                                        limiter=self._workers)
        except Unsupported as e:
            return error_answer(req.id, "unsupported", str(e), model.describe())
        except NonFiniteOutput:
            health.requests, health.nonfinite = health.requests + 1, health.nonfinite + 1
            log.error("model_output_nonfinite id=%s model=%s", req.id, model.entry.sha256[:12])
            return error_answer(req.id, "internal", "the model gave a non-finite output",
                                model.describe())
        except Exception:
            health.requests, health.errors = health.requests + 1, health.errors + 1
            raise
        ms = (time.perf_counter() - t0) * 1000
        if req.kind != Kind.INFO:
            self.latencies_ms.append(ms)
            health.requests += 1
            health.latencies_ms.append(ms)
        return {"v": VERSION, "id": req.id, "ok": True,
                "model": model.describe() | (model.shape() if req.kind == Kind.INFO else {}),
                "objects": objects, "ms": round(ms, 3)}

    async def handle(self, stream: trio.SocketStream) -> None:
        """One client: requests answered in order until it leaves or breaks the protocol.

        A client that resets its connection mid-read or mid-answer is gone, not an error of
        the service: trio raises BrokenResourceError there, which must never reach the
        listener's nursery (it would end the service for every other client).
        """
        try:
            await self._serve_client(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            log.info("client_gone reason=%s", e)

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        async with self._clients, stream:
            reader = _Reader(stream)
            while True:
                with trio.move_on_after(IDLE_S):
                    head = await reader.exactly(LENGTH.size)
                if head is None or reader.closed:
                    return
                (n,) = LENGTH.unpack(head)
                if n > MAX_REQUEST:
                    await self._refuse(stream, 0, "too_large",
                                       f"request of {n} bytes is over the {MAX_REQUEST} limit")
                    return
                with trio.move_on_after(READ_S):
                    body = await reader.exactly(n)
                if body is None:
                    return  # gone, or too slow: the stream's position is lost
                try:
                    req = decode_request(body)
                except BadRequest as e:
                    await self._refuse(stream, _request_id(body), "bad_request", str(e))
                    if e.fatal:
                        return
                    continue
                try:
                    answer = await self.answer(req)
                except Exception as e:  # a model that fails on this input: the client hears
                    log.exception("inference_failed id=%s", req.id)
                    answer = error_answer(req.id, "internal", f"inference failed "
                                          f"({type(e).__name__})", None)
                self.requests += 1
                self.failures += not answer["ok"]
                await stream.send_all(encode_answer(answer))

    async def _refuse(self, stream: trio.SocketStream, req_id: int, code: str,
                      message: str) -> None:
        self.failures += 1
        log.info("request_refused code=%s reason=%s", code, message)
        model = self.model.describe() if self.model else None
        await stream.send_all(encode_answer(error_answer(req_id, code, message, model)))

    # --- health ---------------------------------------------------------------------------------

    async def probe(self) -> bool:
        """One inference through the worker threads: proves the service can answer."""
        model = self.model
        if model is None:
            return False
        info = model.net.info
        if info.task == "detect":
            w, h = info.frame_size
            req = Request(0, Kind.FRAME, np.zeros((h, w, 3), np.uint8), np.zeros((0, 4)))
        else:
            s = info.input_size
            req = Request(0, Kind.CROPS, np.zeros((1, s, s, 3), np.uint8), np.zeros((0, 4)))
        # A NaN still means the service answers; judging the model is OTA's health window's job.
        with contextlib.suppress(NonFiniteOutput):
            await trio.to_thread.run_sync(_infer, model.net, req, self.cfg.serve.min_score,
                                          limiter=self._workers)
        return True

    async def watchdog(self) -> None:
        every = self.notifier.watchdog_s or 10.0
        while True:
            if await self.probe():
                self.notifier.watchdog(self.status_line())
            await trio.sleep(every)

    async def report(self) -> None:
        """``STATE/serve/stats.json`` every ``STATS_S``: the learner's telemetry reads it."""
        path = installed.serve_dir(self.state_dir) / STATS_FILE
        while True:
            p50, p99 = self.percentiles()
            model = self.model.entry.model_hash if self.model else None
            stats = {"ts": round(time.time(), 3), "requests": self.requests,
                     "refused": self.failures, "switches": self.switches,
                     "p50_ms": None if math.isnan(p50) else round(p50, 3),
                     "p99_ms": None if math.isnan(p99) else round(p99, 3),
                     "rss_mb": round(rss_mb(), 1), "cpu_s": round(cpu_s(), 2), "model": model,
                     "models": {sha: h.summary() for sha, h in self.health.items()}}
            try:
                await trio.to_thread.run_sync(atomic_write_bytes, path,
                                              json.dumps(stats).encode(), 0o640)
            except OSError as e:
                log.warning("stats_unwritable path=%s error=%s", path, e)
            await trio.sleep(STATS_S)

    def percentiles(self) -> tuple[float, float]:
        return percentiles(self.latencies_ms)

    def status_line(self) -> str:
        if self.model is None:
            return "waiting for the learner to install a model"
        p50, p99 = self.percentiles()
        e = self.model.entry
        return (f"serving model {e.model_hash[:12]} v{e.version} ({e.source}); "
                f"{self.requests} requests, {self.failures} refused; p50 {p50:.2f} ms, "
                f"p99 {p99:.2f} ms")

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled. READY once a model is loaded and the socket is open."""
        sock = await _listen(self.cfg.serve.socket, self.cfg.serve.socket_mode,
                             self.cfg.serve.max_clients)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.watch_model)
                nursery.start_soon(self.report)
                # Clients hear "no_model" until the first install, rather than hang.
                nursery.start_soon(trio.serve_listeners, self.handle,
                                   [trio.SocketListener(sock)])
                self.notifier.status(self.status_line())
                while self.model is None:
                    await trio.sleep(POLL_S)
                nursery.start_soon(self.watchdog)
                log.info("serving socket=%s model=%s", self.cfg.serve.socket,
                            self.model.entry.model_hash[:12])
                self.notifier.ready(self.status_line())
                self.ready.set()
        finally:
            sock.close()
            with trio.CancelScope(shield=True):
                _unlink_socket(self.cfg.serve.socket)


def percentiles(latencies: deque[float]) -> tuple[float, float]:
    """p50 and p99 of ``latencies``; NaN when there are none."""
    xs = sorted(latencies)
    if not xs:
        return (math.nan, math.nan)
    return xs[len(xs) // 2], xs[min(len(xs) - 1, math.ceil(0.99 * len(xs)) - 1)]


def _infer(net: OnnxClassifier | OnnxDetector, req: Request,
           min_score: float) -> list[dict[str, object]]:
    if isinstance(net, OnnxDetector):
        return _detect(net, req, min_score)
    return _classify(net, req)


def _detect(det: OnnxDetector, req: Request, min_score: float) -> list[dict[str, object]]:
    """The objects a detector finds in a FRAME without boxes, best first."""
    if req.kind != Kind.FRAME or len(req.boxes):
        raise Unsupported("the served model is a detector: send a FRAME without boxes, and it "
                          "answers the objects it finds")
    found = det.detect(req.pixels, min_score)
    if not (np.isfinite(found.boxes).all() and np.isfinite(found.scores).all()):
        raise NonFiniteOutput
    names = det.info.classes
    return [{"box": [round(float(v), 1) for v in box], "class": names[i], "class_id": i,
             "score": round(s, 4)}
            for box, i, s in zip(found.boxes, found.labels.tolist(), found.scores.tolist(),
                                 strict=True)]


def _classify(clf: OnnxClassifier, req: Request) -> list[dict[str, object]]:
    size, names = clf.info.input_size, clf.info.classes
    boxes: list[list[float] | None]
    if req.kind == Kind.CROPS:
        batch = req.pixels
        if batch.shape[1:3] != (size, size):
            batch = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
                              for c in batch])
        boxes = [None] * len(batch)
    elif len(req.boxes):
        batch = crops(req.pixels, req.boxes, size)
        boxes = [[round(float(v), 1) for v in b] for b in req.boxes]
    else:
        batch, boxes = whole_image(req.pixels, size), [None]
    ids, scores = clf.classify(batch)
    if not np.isfinite(scores).all():
        raise NonFiniteOutput
    return [{"box": box, "class": names[i], "class_id": i, "score": round(s, 4)}
            for box, i, s in zip(boxes, ids.tolist(), scores.tolist(), strict=True)]


def _request_id(body: bytes) -> int:
    return int.from_bytes(body[8:12], "big") if len(body) >= 12 else 0


class _Reader:
    """Exact-length reads from a stream; None when the peer closed first."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.buf, self.closed = stream, bytearray(), False

    async def exactly(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self.buf)))
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


async def _listen(path: Path, mode: int, backlog: int) -> trio.socket.SocketType:
    _unlink_socket(path)  # a previous run's socket, if it crashed
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _unlink_socket(path: Path) -> None:
    """Remove ``path`` if it is a socket; never anything else."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
