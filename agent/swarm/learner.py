"""A vehicle's learning side: train from the round's base model, send a compressed delta.

The learner owns the vehicle's model, optimiser state (kept across rounds, as a vehicle keeps
it across days), training data and the codec's error-feedback residual. It knows nothing about
transports: it turns (base model, round) into a payload and takes merged models back.

Training ahead: while round r is exchanged, committed and attested (a block time or more on a
real chain), the learner may start round r+1's local steps before round r's merged model M is
final. They start from the learner's own weights and follow the best guess at M the vehicle
has: the mean of round r's deltas it holds so far, then, once it has verified round r's
commitment, the merge itself (M, unless the commit expires). A slow round need not idle the
trainer once it has taken ``local_steps`` ahead: it may go on up to ``max_steps``, and the
round's delta then carries that much more work (steps taken at the verified merge are not
stale at all). Each better guess G moves the steps
so far onto it, W <- G + (W - B) with B the previous guess, and training goes on from there.
When the round is final, the same move onto the final model (nothing, if it is the verified
merge) and the rest of the steps follow. The round's delta is taken against the final model as
always, so the merge stays bit-reproducible and verifiable; only the steps taken before the
commit was verified are stale, computed at a guess rather than the merge (delayed SGD, one
round at most).

Fleet momentum (``fleet_momentum``): a vehicle's AdamW momentum would follow its own town's
gradients, so the fleet's mean step is shorter and more crooked than central training's. After
each merge the learner moves its first moment so that, under its own second moment, the round's
steps would have produced the fleet's merged update rather than its own contribution: every
vehicle then carries on in the fleet's direction (as Mime does with a server's optimiser state,
here recovered from the merge itself, with no extra bytes). Only local training changes; the
merge and its verification do not. Dense deltas only: a sparse payload carries what error
feedback saved up over many rounds, not this round's step, so the gap to the merge says nothing
about the fleet's direction (tried: the compressed swarm's loss rose).

Lookahead (``lookahead`` L, for sparse deltas): error feedback sends each vehicle's work late,
so the merged model trails where the fleet is heading and a round's steps are taken at a point
the fleet has already left. The learner keeps a trend, a moving average of the merged update per
round, and takes its round's steps at base + L * trend; its delta is W minus that point, the
steps alone, so the merge and its verification do not change (docs/detector.md, "Looking ahead
by the fleet's trend").
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.codec import ANONYMOUS, CodecConfig, encode
from models.family import CLASSIFIER, Data, ModelFamily
from models.layout import ModelLayout
from models.train import TrainConfig, lr_at, make_optimizer

TREND_BETA = 0.95  # the trend averages the merged updates of ~20 rounds


class SitOut(Exception):
    """This vehicle has nothing to contribute this round (too few samples); not a failure."""


@dataclass(frozen=True)
class Contributed:
    payload: bytes
    samples: int
    loss: float  # mean training loss over the round's local steps
    delta: np.ndarray  # (P,) the uncompressed training delta (for local accounting only)


@dataclass
class _Ahead:
    """Steps of round ``round`` taken before its base model was known."""
    round: int
    origin: np.ndarray  # (P,) the weights the steps are relative to: ours, then the verified M
    losses: list[float]


class Learner:
    def __init__(self, data: Data, train_cfg: TrainConfig, codec: CodecConfig,
                 total_steps: int, seed: int, family: ModelFamily = CLASSIFIER,
                 fleet_momentum: bool = False, lookahead: float = 0.0) -> None:
        if fleet_momentum and codec.density < 1.0:
            raise ValueError(f"fleet momentum needs dense deltas; the codec sends "
                             f"{codec.density:.0%} of each")
        if not 0 <= lookahead < float("inf"):
            raise ValueError(f"lookahead {lookahead} must be zero or more rounds, and finite")
        torch.manual_seed(seed)
        self.family = family
        self.model = family.new_model()
        self.layout = ModelLayout.of(self.model.state_dict())
        self.opt = make_optimizer(self.model, train_cfg)
        self.set_data(data)
        self.train_cfg, self.codec, self.total_steps = train_cfg, codec, total_steps
        self.g = torch.Generator().manual_seed(seed)
        self.residual = np.zeros(self.layout.size, np.float32)
        self.step = 0  # position in the shared schedule
        self._ahead: _Ahead | None = None
        self._verified: tuple[int, np.ndarray] | None = None  # (round, its base), handed over
        self._handover = threading.Lock()  # by the driver's loop to the training thread
        self.fleet_momentum = fleet_momentum
        # (round, base + what our payload carried): where our contribution alone would have
        # moved the model; the next round's base says where the fleet moved it.
        self._mine: tuple[int, np.ndarray] | None = None
        self.lookahead = np.float32(lookahead)
        self._trend: tuple[int, np.ndarray, np.ndarray] | None = None  # (round, base, trend)

    def set_data(self, data: Data) -> None:
        """Train on ``data`` from now on (a vehicle's buffer grows and turns over)."""
        self.prepared = self.family.prepare(data) if len(data) else None
        self.samples = len(data)

    def weights(self) -> np.ndarray:
        return self.layout.flatten(self.model.state_dict())

    def load(self, flat: np.ndarray) -> None:
        self.model.load_state_dict(self.layout.unflatten(flat))

    def state(self) -> dict[str, object]:
        """What a restart needs besides the model: optimiser, residual, sampler, schedule (a
        copy: training may go on while it is written out)."""
        return {"opt": copy.deepcopy(self.opt.state_dict()), "residual": self.residual.copy(),
                "rng": self.g.get_state(), "step": self.step,
                "mine": None if self._mine is None else (self._mine[0], self._mine[1].copy()),
                "trend": None if self._trend is None else
                (self._trend[0], self._trend[1].copy(), self._trend[2].copy())}

    def restore(self, state: dict[str, object]) -> None:
        self.opt.load_state_dict(state["opt"])  # type: ignore[arg-type]
        residual = np.asarray(state["residual"], np.float32)
        if residual.shape != self.residual.shape:
            raise ValueError(f"residual has shape {residual.shape}, expected "
                             f"{self.residual.shape}")
        self.residual = residual
        self.g.set_state(state["rng"])  # type: ignore[arg-type]
        self.step = int(state["step"])  # type: ignore[call-overload]
        mine = state.get("mine")  # absent from a state saved before fleet momentum
        self._mine = None
        if isinstance(mine, tuple) and np.shape(mine[1]) == (self.layout.size,):
            self._mine = (int(mine[0]), np.asarray(mine[1], np.float32))
        trend = state.get("trend")  # absent from a state saved before lookahead
        self._trend = None
        if isinstance(trend, tuple) and all(np.shape(t) == (self.layout.size,)
                                            for t in trend[1:]):
            self._trend = (int(trend[0]), np.asarray(trend[1], np.float32),
                           np.asarray(trend[2], np.float32))

    def _steps(self, steps: int) -> list[float]:
        """``steps`` steps of the schedule from ``self.step``; returns their losses."""
        if self.prepared is None:
            raise SitOut("no labelled samples to train on yet")
        losses = self.family.run_steps(self.model, self.opt, self.prepared, self.step, steps,
                                       self.total_steps, self.train_cfg, self.g)
        self.step += steps
        return losses

    def train_round(self, base: np.ndarray, local_steps: int) -> tuple[np.ndarray, float]:
        """Train ``local_steps`` from ``base`` (carrying over steps taken ahead for this round);
        returns (delta W - base, mean loss)."""
        ahead, self._ahead = self._ahead, None
        losses: list[float] = []
        if ahead is not None and ahead.losses:
            losses = ahead.losses
            self._move(ahead, base)
        else:
            self.load(base)
        if len(losses) < local_steps:
            losses += self._steps(local_steps - len(losses))
        return self.weights() - base, float(np.mean(losses))

    def train_ahead(self, round_: int, local_steps: int, stop: Callable[[], bool],
                    max_steps: int | None = None) -> int:
        """Start round ``round_``'s local steps before its base model is known, from this
        learner's own weights, one step at a time until ``stop()`` or ``max_steps`` (default
        ``local_steps``) are done; ``contribute`` for that round carries them over, all of
        them. Returns the steps taken."""
        self._ahead = None
        if self.samples == 0:
            return 0
        ahead = _Ahead(round_, self.weights(), [])
        self.step = round_ * local_steps
        while len(ahead.losses) < (max_steps or local_steps) and not stop():
            verified = self._take_verified(round_)
            if verified is not None:
                self._move(ahead, verified)
            ahead.losses += self._steps(1)
            if not np.isfinite(ahead.losses[-1]):
                return 0  # diverged: start the round afresh from its base
        self._ahead = ahead
        return len(ahead.losses)

    def drop_ahead(self) -> None:
        """Forget steps taken ahead (the round they were for will not be trained here)."""
        self._ahead = None

    def rebase_ahead(self, round_: int, base: np.ndarray) -> None:
        """A better guess at round ``round_``'s base (the verified merge, or before it a mean
        of the deltas so far): steps taken ahead for it move onto it at the next step. Called
        from any thread."""
        with self._handover:
            self._verified = (round_, base)

    def _take_verified(self, round_: int) -> np.ndarray | None:
        with self._handover:
            verified, self._verified = self._verified, None
        return verified[1] if verified is not None and verified[0] == round_ else None

    def _move(self, ahead: _Ahead, base: np.ndarray) -> None:
        """Carry the steps taken so far onto ``base``: W <- base + (W - origin)."""
        if not np.array_equal(base, ahead.origin):  # already there: leave W bit for bit
            self.load(base + (self.weights() - ahead.origin))
        ahead.origin = base

    def contribute(self, base: np.ndarray, base_hash: bytes, round_: int,
                   local_steps: int, author: bytes = ANONYMOUS) -> Contributed:
        """One round's work: train, then compress the delta with error feedback. ``author``
        (the vehicle's 20-byte address) goes into the payload."""
        if self.samples == 0:
            raise SitOut("no labelled samples to train on yet")
        if self._ahead is not None and self._ahead.round != round_:
            self._ahead = None
        mine, self._mine = self._mine, None
        if self.fleet_momentum and mine is not None and mine[0] == round_ - 1:
            self._follow_fleet(base - mine[1], round_ - 1, local_steps)
        # The schedule follows the fleet's round, not ours (steps taken ahead count).
        self.step = round_ * local_steps + (len(self._ahead.losses) if self._ahead else 0)
        delta, loss = self.train_round(self._start(base, round_), local_steps)
        before = self.residual
        payload, self.residual = encode(delta, self.layout, base_hash, round_, self.codec,
                                        self.residual, author)
        if self.fleet_momentum:  # what the payload carries: the delta and residual, less the rest
            self._mine = (round_, base + delta + before - self.residual)
        return Contributed(payload=payload, samples=self.samples, loss=loss, delta=delta)

    def _start(self, base: np.ndarray, round_: int) -> np.ndarray:
        """Where round ``round_``'s steps start: ``base``, plus ``lookahead`` rounds of the
        trend, which takes in the update from the last base seen (per round since)."""
        if not self.lookahead:
            return base
        trend = np.zeros_like(base) if self._trend is None else self._trend[2]
        if self._trend is not None and round_ > self._trend[0]:
            per_round = (base - self._trend[1]) / np.float32(round_ - self._trend[0])
            trend = np.float32(TREND_BETA) * trend + np.float32(1 - TREND_BETA) * per_round
        self._trend = (round_, base.copy(), trend)
        return base + self.lookahead * trend

    def _follow_fleet(self, gap: np.ndarray, round_: int, local_steps: int) -> None:
        """Move AdamW's first moment by the update ``gap`` (the fleet's merged update less our
        contribution to round ``round_``), turned into gradient units: an Adam step moves a
        weight by lr * m_hat / (sqrt(v_hat) + eps), ``local_steps`` times a round."""
        group = self.opt.param_groups[0]
        (beta1, beta2), eps = group["betas"], group["eps"]
        first = round_ * local_steps
        lr = float(np.mean([lr_at(s, self.total_steps, self.train_cfg)
                            for s in range(first, first + local_steps)]))
        if not lr > 0:
            return
        params = dict(self.model.named_parameters())
        for spec in self.layout.tensors:
            p = params.get(spec.name)
            st = self.opt.state.get(p) if p is not None else None
            if not st:
                continue
            t = float(st["step"])
            piece = torch.from_numpy(gap[spec.offset:spec.offset + spec.numel]).view(spec.shape)
            scale = (st["exp_avg_sq"] / (1 - beta2 ** t)).sqrt_().add_(eps)
            scale.mul_((1 - beta1 ** t) / (local_steps * lr))
            st["exp_avg"].addcmul_(piece, scale, value=-1.0)
