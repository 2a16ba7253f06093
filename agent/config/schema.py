"""The vehicle config's schema: one TOML file, validated with pydantic; unknown keys are errors.

``load(path)`` gives a ``VehicleConfig`` or raises ``ConfigError`` listing every problem with
its key path (``p2p.listen: ...``). Relative paths are taken from the config file's folder, so
a config and its key can travel together. Imports pydantic and the standard library only: the
inference service loads this too.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from models.recipe import RECIPES, Recipe

MAX_CONFIG_BYTES = 1 << 20
M = TypeVar("M", bound=BaseModel)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class ConfigError(Exception):
    """A config that fails its checks; each line of ``problems`` names a key and the problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__(f"config {path}: " + "; ".join(problems))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vehicle(Section):
    key_file: Path  # secp256k1 key, mode 0600: the vehicle's libp2p identity and chain account
    state_dir: Path  # buffer, checkpoints, installed models; systemd's StateDirectory=
    key_password_file: Path | None = None  # for an encrypted keystore


class Source(Section):
    """Where labelled frames come from: a camera with ground truth (``sim:TOWN/WEATHER``) or a
    folder of images with YOLO labels that a labelling pipeline keeps filling."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    uri: Annotated[str, Field(min_length=1, max_length=4096)]
    fps: PositiveFloat = 1.0  # a camera's frames kept per second at most (it gives far more)


@dataclass(frozen=True)
class FamilyDefaults:
    """What a key left out means, by the model a vehicle learns (``training.model``)."""

    recipe: Recipe  # batch and rate
    max_samples: int  # kept in the buffer: ~3 kB a crop, ~230 kB a 320x240 frame


FAMILY_DEFAULTS = {
    # 500 frames are 115 MB, held twice in memory while the learner reloads its buffer.
    "detector": FamilyDefaults(RECIPES["detector"], max_samples=500),
    "classifier": FamilyDefaults(RECIPES["classifier"], max_samples=20_000),  # ~60 MB of crops
}


class Buffer(Section):
    # Labelled samples on disk (crops, or whole frames for a detector); oldest out first.
    # Default: 500 frames or 20,000 crops.
    max_samples: PositiveInt | None = None
    max_age_h: PositiveFloat = 24 * 14
    held_out: Share = 0.1  # kept out of training to measure the vehicle's own accuracy


class Training(Section):
    # What the fleet learns: "detector" (the objects in whole frames, with boxes) or
    # "classifier" (names for boxes something else found). One fleet, one model: its genesis.
    model: Literal["detector", "classifier"] = "detector"
    local_steps: PositiveInt = 30  # per round
    batch_size: PositiveInt | None = None  # default: 16 frames or 64 crops
    lr: PositiveFloat | None = None  # the schedule's peak; default: 4e-3 or 3e-3
    schedule_rounds: PositiveInt = 1000  # the learning rate decays to zero over these rounds
    threads: Annotated[int, Field(ge=1, le=64)] = 1
    # The arithmetic of training: "bf16" is ~1.5x faster on a CPU that has bfloat16
    # instructions (AVX512-BF16 or AMX) and slower on one without; "auto" picks by the CPU.
    # Weights and merges stay float32 either way.
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    cpu_share: Annotated[float, Field(gt=0, le=1)] = 0.5  # of wall time spent training, at most
    min_samples: PositiveInt = 64  # below this the vehicle does not contribute
    train_ahead: bool = True  # train the next round while this one is committed (no idling)
    # A round slower than its local steps: keep training up to this many rounds' worth of
    # steps ahead; the next delta carries them all.
    rounds_ahead: Annotated[float, Field(ge=1, le=4)] = 2.0
    # The delta each round sends (docs/spec/delta-v2.md): the share of coordinates, and bits
    # per value. Payloads describe themselves, so vehicles of one fleet may differ.
    codec_density: Annotated[float, Field(gt=0, le=1)] = 0.1
    codec_bits: Literal[4, 8, 32] = 8
    # Local training that follows the fleet (agent/swarm/learner.py; off by default). Sparse
    # deltas: take each round's steps this many rounds of the fleet's trend ahead (measured at
    # 10 with 2% at 4 bits). Dense deltas (codec_density = 1) only: steer AdamW's momentum by
    # the fleet's merged update.
    lookahead: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.0
    fleet_momentum: bool = False
    last_round: Annotated[int, Field(ge=0)] | None = None  # stop after it (simulated fleets)

    @field_validator("fleet_momentum")
    @classmethod
    def _dense_for_momentum(cls, v: bool, info: ValidationInfo) -> bool:
        density = info.data.get("codec_density", 1.0)
        if v and density < 1:
            raise ValueError(f"fleet momentum needs dense deltas (codec_density = 1), and this "
                             f"vehicle sends {density:.0%} of each")
        return v

    def steps_batch(self) -> int:
        return self.batch_size or FAMILY_DEFAULTS[self.model].recipe.batch_size

    def peak_lr(self) -> float:
        return self.lr or FAMILY_DEFAULTS[self.model].recipe.lr


class P2P(Section):
    listen: str = "/ip4/0.0.0.0/tcp/4001"
    bootstrap: list[str] = []  # /ip4/HOST/tcp/PORT/p2p/PEER_ID of a few other vehicles

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if not re.fullmatch(r"/ip[46]/[^/]+/tcp/\d{1,5}", v):
            raise ValueError("expected /ip4/ADDRESS/tcp/PORT")
        return v

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.fullmatch(r"/ip[46]/[^/]+/tcp/\d{1,5}/p2p/\w+", a):
                raise ValueError(f"{a!r}: expected /ip4/ADDRESS/tcp/PORT/p2p/PEER_ID")
        return v


class Chain(Section):
    rpc_url: str  # the fleet chain's JSON-RPC endpoint
    contract: str  # the fleet's SwarmLedger (``swarmdrive chain deploy`` prints it)
    timeout_s: PositiveFloat = 10.0
    # How long the learner waits at start for an RPC node that does not answer (a vehicle
    # booting during an outage) before it calls the config wrong; 0: not at all.
    start_wait_s: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = 120.0
    # How often the contract's events are read: about the chain's block time. Each poll is one
    # or two requests; a fleet polls its RPC node with vehicles / poll_s requests a second.
    poll_s: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0

    @field_validator("rpc_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", v):
            raise ValueError("expected an http:// or https:// URL")
        return v

    @field_validator("contract")
    @classmethod
    def _contract(cls, v: str) -> str:
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", v):
            raise ValueError("expected a contract address, 0x and 40 hex digits")
        return v


class Serve(Section):
    socket: Path  # the local API's Unix socket (docs/spec/serve-v1.md)
    threads: Annotated[int, Field(ge=1, le=64)] = 1  # ONNX Runtime intra-op threads
    max_clients: Annotated[int, Field(ge=1, le=1024)] = 16
    socket_mode: Annotated[int, Field(ge=0, le=0o777)] = 0o660  # who may ask: owner and group
    # A detector's answers: objects scoring under this are left out.
    min_score: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.3


class Ota(Section):
    # "release": serve the operator's releases (docs/spec/ota-v1.md), the default for driving;
    # "swarm": serve each final swarm round (research fleets).
    policy: Literal["release", "swarm"] = "release"
    poll_s: PositiveFloat = 10.0  # how often the chain's releases are read
    health_window_s: PositiveFloat = 60.0  # after a switch: watched, then kept or rolled back
    latency_budget_ms: PositiveFloat = 50.0  # p99 per request, in the smoke test and the window
    max_chain_age_s: PositiveFloat = 600.0  # an older newest block raises chain_frozen
    audit_s: PositiveFloat = 60.0  # how often the installed files are hashed again
    fetch_timeout_s: PositiveFloat = 120.0  # per source


class Telemetry(Section):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 8883
    tls: bool = True
    ca_file: Path | None = None  # default: the system's CAs
    username_file: Path | None = None
    password_file: Path | None = None
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = (
        "swarmdrive")
    interval_s: PositiveFloat = 30.0
    queue_limit: PositiveInt = 1000  # messages kept while the broker is away; then dropped


class VehicleConfig(Section):
    vehicle: Vehicle
    sources: list[Source] = []
    buffer: Buffer = Buffer()
    training: Training = Training()
    p2p: P2P = P2P()
    chain: Chain
    serve: Serve
    ota: Ota = Ota()
    telemetry: Telemetry | None = None  # no [telemetry]: none sent
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def buffer_samples(self) -> int:
        """The buffer's limit: ``buffer.max_samples``, or the default for what it keeps."""
        return self.buffer.max_samples or FAMILY_DEFAULTS[self.training.model].max_samples

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[Source]) -> list[Source]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return v


def load(path: Path) -> VehicleConfig:
    """The config in ``path``, relative paths resolved against its folder."""
    return _resolved(read_toml(path, VehicleConfig), path.parent.absolute())


def read_toml(path: Path, model: type[M]) -> M:
    """``path``'s TOML validated as ``model``; ``ConfigError`` lists every problem."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(path, [f"larger than {MAX_CONFIG_BYTES} bytes"])
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, ["no such file"]) from None
    except IsADirectoryError:
        raise ConfigError(path, ["is a directory"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, [f"cannot read it ({e})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"not valid TOML ({e})"]) from None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(path, [_problem(err) for err in e.errors()]) from None


def _problem(err: object) -> str:
    e = dict(err)  # type: ignore[call-overload]
    where = ".".join(str(p) for p in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if e["type"] == "missing":
        return f"{where}: missing"
    msg = str(e["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg} (got {e['input']!r})"[:300]


def _resolved(cfg: VehicleConfig, base: Path) -> VehicleConfig:
    def r(p: Path | None) -> Path | None:
        return None if p is None else base / p.expanduser()

    v, s, t = cfg.vehicle, cfg.serve, cfg.telemetry
    update: dict[str, object] = {
        "vehicle": v.model_copy(update={"key_file": r(v.key_file), "state_dir": r(v.state_dir),
                                        "key_password_file": r(v.key_password_file)}),
        "serve": s.model_copy(update={"socket": r(s.socket)}),
    }
    if t is not None:
        update["telemetry"] = t.model_copy(update={
            "ca_file": r(t.ca_file), "username_file": r(t.username_file),
            "password_file": r(t.password_file)})
    return cfg.model_copy(update=update)
