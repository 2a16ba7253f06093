"""The in-memory fleet: N vehicles learn together in one process (``--transport memory``).

Each round: every vehicle trains ``local_steps`` from the round's base model on its own data,
compresses its delta (or an attacker crafts one), the payloads pass as bytes through the codec
exactly as they would over the network, the contributions are merged in vehicle order (the
libp2p fleet's canonical order is by sender address), and the merged model is the next round's
base. Baselines of the Nature 2021 swarm-learning paper run on the same data and budget: each
vehicle alone, and one central model on the pooled data with the fleet's total compute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from agent.swarm.combine import combine
from agent.swarm.learner import Learner
from models.codec import DENSE, FLEET_CODEC, CodecConfig, encode
from models.family import FAMILIES, Classifier, Data, Detector, ModelFamily, Net
from models.layout import flat_hash
from models.merge import MergeConfig
from models.recipe import RECIPES
from models.train import TrainConfig, make_optimizer
from sim.attacks import attack, claimed_samples
from sim.datasets import fleet_test_frames, fleet_test_set
from sim.profiles import Profile, fleet_profiles, vehicle_data, vehicle_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetConfig:
    vehicles: int = 8
    # 20 rounds of 30 steps, each vehicle sending 10% of its delta at 8 bits (25x smaller than
    # dense): 0.907 against dense 0.91. Sparser deltas need many more, shorter rounds
    # (benchmarks/learning.py: 2% at 4 bits matches dense at 300 x 2; benchmarks/frontier.py: it
    # loses 6 points at 20 x 30).
    rounds: int = 20
    local_steps: int = 30
    batch_size: int = RECIPES["classifier"].batch_size
    lr: float = RECIPES["classifier"].lr
    # The baselines' rate (each vehicle alone, central), when the swarm's ``lr`` is tuned for
    # its rounds and theirs is not. None: the fleet's ``lr``.
    solo_lr: float | None = None
    frames_per_weather: int = 60  # each vehicle's own drive, per weather of its profile
    test_frames_per_domain: int = 8
    codec: CodecConfig = FLEET_CODEC
    merge: MergeConfig = field(default_factory=MergeConfig)
    # The first ``attackers`` vehicles are Byzantine. With the default profiles their towns are
    # driven by other vehicles too, so an attack costs the fleet no town it would see otherwise.
    attackers: int = 0
    attack: str = "sign_flip"
    seed: int = 0
    model: str = "classifier"  # or "detector": a family of models.family.FAMILIES
    bf16: bool = False  # every arm's training in bfloat16 (models/train.py, TrainConfig.bf16)
    fleet_momentum: bool = False  # the swarm's vehicles follow the merge's momentum (Learner)
    lookahead: float = 0.0  # rounds of the fleet's trend the vehicles step ahead by (Learner)

    @property
    def family(self) -> ModelFamily:
        return FAMILIES[self.model]

    @property
    def total_steps(self) -> int:
        return self.rounds * self.local_steps

    def with_family_recipe(self) -> FleetConfig:
        """This fleet, and its baselines, at its family's own batch and rate (models/recipe.py),
        as the daemon trains it."""
        recipe = RECIPES[self.model]
        return replace(self, batch_size=recipe.batch_size, lr=recipe.lr, solo_lr=recipe.lr)

    def train_config(self, solo: bool = False) -> TrainConfig:
        """A vehicle's schedule over the whole run; ``solo``: a baseline's, at ``solo_lr``."""
        lr = self.solo_lr if solo and self.solo_lr is not None else self.lr
        return TrainConfig(steps=self.total_steps, batch_size=self.batch_size, lr=lr,
                           seed=self.seed, bf16=self.bf16)


@dataclass(frozen=True)
class RoundStats:
    round: int
    loss: float  # mean local training loss of the honest vehicles
    payload_bytes: float  # mean per vehicle
    rejected: int
    model_hash: str
    accuracy: float | None = None  # the family's metric: accuracy, or the detector's mAP@0.5
    expired: int = 0  # commits that never reached the quorum (a lying committer's)


@dataclass
class SwarmResult:
    accuracy: float  # the family's metric: accuracy, or the detector's mAP@0.5
    model_hash: str
    model: Net  # the final merged model
    rounds: list[RoundStats] = field(default_factory=list)
    bytes_per_round: float = 0.0  # mean payload bytes one vehicle sends per round
    seconds: float = 0.0


@dataclass(frozen=True)
class FleetData:
    profiles: list[Profile]
    train: list[Data]
    test: Data


def fleet_test_data(cfg: FleetConfig) -> Data:
    """The fleet-wide test set: crops, or frames for the detector."""
    fam = cfg.family
    if isinstance(fam, Detector):
        return fleet_test_frames(cfg.seed, cfg.test_frames_per_domain, fam.config.width,
                                 fam.config.height)
    assert isinstance(fam, Classifier)
    return fleet_test_set(cfg.seed, cfg.test_frames_per_domain, fam.config.input_size)


def make_fleet_data(cfg: FleetConfig) -> FleetData:
    """Each vehicle's own labelled data (crops, or frames for the detector) and the test set."""
    profiles = fleet_profiles(cfg.vehicles)
    fam = cfg.family
    seeds = [cfg.seed * 1000 + i for i in range(cfg.vehicles)]
    if isinstance(fam, Detector):
        size = (fam.config.width, fam.config.height)
        train: list[Data] = [vehicle_frames(p, s, cfg.frames_per_weather, size)
                             for p, s in zip(profiles, seeds, strict=True)]
    else:
        assert isinstance(fam, Classifier)
        train = [vehicle_data(p, s, cfg.frames_per_weather, fam.config.input_size)
                 for p, s in zip(profiles, seeds, strict=True)]
    return FleetData(profiles, train, fleet_test_data(cfg))


def fleet_learners(cfg: FleetConfig, data: FleetData) -> list[Learner]:
    """One learner per vehicle, seeded by its index: the first one's weights are the genesis."""
    return [Learner(d, cfg.train_config(), cfg.codec, cfg.total_steps, seed=cfg.seed * 1000 + i,
                    family=cfg.family, fleet_momentum=cfg.fleet_momentum,
                    lookahead=cfg.lookahead)
            for i, d in enumerate(data.train)]


def run_swarm(cfg: FleetConfig, data: FleetData,
              progress: Callable[[RoundStats], None] | None = None,
              eval_every: int = 0) -> SwarmResult:
    """R rounds of swarm learning with the payloads passed in memory."""
    t0 = time.perf_counter()
    learners = fleet_learners(cfg, data)
    layout = learners[0].layout
    # Every vehicle starts from the same genesis model (as the chain's round 0 will name it).
    base = learners[0].weights()
    n, f = cfg.vehicles, cfg.attackers
    rng = np.random.default_rng(cfg.seed)
    stats: list[RoundStats] = []
    for r in range(cfg.rounds):
        base_hash = bytes.fromhex(flat_hash(layout, base))
        outs = [lr.contribute(base, base_hash, r, cfg.local_steps) for lr in learners]
        honest = [o.delta for o in outs[f:]]
        payloads = [o.payload if cfg.attack == "committer" else  # its lie is in the commit
                    encode(attack(cfg.attack, o.delta, honest, n, f, rng), layout, base_hash, r,
                           cfg.codec)[0] for o in outs[:f]]
        payloads += [o.payload for o in outs[f:]]
        samples = [claimed_samples(cfg.attack, o.samples) for o in outs[:f]]
        samples += [o.samples for o in outs[f:]]
        combined = combine(base, list(zip(payloads, samples, strict=True)), layout, cfg.merge)
        expired = expired_commits(r, n, f if cfg.attack == "committer" else 0)
        base, result = combined.model, combined.merge
        acc = None
        if eval_every and ((r + 1) % eval_every == 0 or r + 1 == cfg.rounds):
            acc = score_weights(learners[0], base, data.test)
        st = RoundStats(round=r, loss=float(np.mean([o.loss for o in outs[f:]])),
                        payload_bytes=float(np.mean([len(p) for p in payloads])),
                        rejected=len(result.rejected), model_hash=flat_hash(layout, base),
                        accuracy=acc, expired=expired)
        stats.append(st)
        log.info("round r=%d loss=%.4f bytes=%.0f rejected=%d", r, st.loss, st.payload_bytes,
                 st.rejected)
        if progress:
            progress(st)
    return SwarmResult(accuracy=score_weights(learners[0], base, data.test),
                       model_hash=flat_hash(layout, base), model=learners[0].model, rounds=stats,
                       bytes_per_round=float(np.mean([s.payload_bytes for s in stats])),
                       seconds=time.perf_counter() - t0)


def expired_commits(round_: int, n: int, liars: int) -> int:
    """Round-v2 finality with vehicles 0..liars-1 committing junk in their slots: how many
    commits expire before an honest committer's merge reaches the quorum (a majority). The
    junk gets the liars' attestations only, never a majority, so the final model is always
    the honest merge; this counts what the lies cost."""
    quorum = n // 2 + 1
    for k in range(n):
        committer = (round_ + k) % n
        if committer >= liars and n - liars >= quorum:
            return k  # an honest commit: every honest vehicle recomputes and attests it
    raise ValueError(f"{liars} of {n} vehicles lying leave no honest quorum")


def score_weights(learner: Learner, flat: np.ndarray, test: Data) -> float:
    """The family's metric of the weights ``flat`` on ``test`` (loaded into ``learner``)."""
    learner.load(flat)
    return learner.family.score(learner.model, test)


def run_local(cfg: FleetConfig, data: FleetData) -> list[float]:
    """Each vehicle alone: the same steps and schedule (at ``solo_lr``) on its own data, never
    merging."""
    accs = []
    for i, d in enumerate(data.train):
        lr = Learner(d, cfg.train_config(solo=True), DENSE, cfg.total_steps,
                     seed=cfg.seed * 1000 + i, family=cfg.family)
        lr.train_round(lr.weights(), cfg.total_steps)
        accs.append(cfg.family.score(lr.model, data.test))
        log.info("local vehicle=%d accuracy=%.4f", i, accs[-1])
    return accs


def run_central(cfg: FleetConfig, data: FleetData) -> float:
    """One model on the pooled data with the fleet's total compute (batch x vehicles), at
    ``solo_lr``."""
    tcfg = replace(cfg.train_config(solo=True), batch_size=cfg.batch_size * cfg.vehicles)
    torch.manual_seed(cfg.seed * 1000)
    fam = cfg.family
    model = fam.new_model()
    pooled = fam.prepare(type(data.train[0]).concat(data.train))  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(cfg.seed)
    fam.run_steps(model, make_optimizer(model, tcfg), pooled, 0, tcfg.steps, tcfg.steps, tcfg, g)
    return fam.score(model, data.test)

