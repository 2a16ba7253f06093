"""A vehicle's learning side: train from the round's base model, send a compressed delta.

The learner owns the vehicle's model, optimiser state (kept across rounds, as a vehicle keeps
it across days), training data and the codec's error-feedback residual. It knows nothing about
transports: it turns (base model, round) into a payload and takes merged models back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.codec import ANONYMOUS, CodecConfig, encode
from models.data import CropSet
from models.layout import ModelLayout
from models.net import CropNet, NetConfig
from models.train import TrainConfig, make_optimizer, run_steps, tensors


class SitOut(Exception):
    """This vehicle has nothing to contribute this round (too few samples); not a failure."""


@dataclass(frozen=True)
class Contributed:
    payload: bytes
    samples: int
    loss: float  # mean training loss over the round's local steps
    delta: np.ndarray  # (P,) the uncompressed training delta (for local accounting only)


class Learner:
    def __init__(self, data: CropSet, train_cfg: TrainConfig, codec: CodecConfig,
                 total_steps: int, seed: int, net: NetConfig = NetConfig()) -> None:
        torch.manual_seed(seed)
        self.model = CropNet(net)
        self.layout = ModelLayout.of(self.model.state_dict())
        self.opt = make_optimizer(self.model, train_cfg)
        self.set_data(data)
        self.train_cfg, self.codec, self.total_steps = train_cfg, codec, total_steps
        self.g = torch.Generator().manual_seed(seed)
        self.residual = np.zeros(self.layout.size, np.float32)
        self.step = 0  # position in the shared schedule

    def set_data(self, data: CropSet) -> None:
        """Train on ``data`` from now on (a vehicle's buffer grows and turns over)."""
        if len(data):
            self.x, self.y = tensors(data)
        else:
            s = self.model.config.input_size
            self.x, self.y = torch.zeros((0, 3, s, s)), torch.zeros((0,), dtype=torch.int64)
        self.samples = len(data)

    def weights(self) -> np.ndarray:
        return self.layout.flatten(self.model.state_dict())

    def load(self, flat: np.ndarray) -> None:
        self.model.load_state_dict(self.layout.unflatten(flat))

    def state(self) -> dict[str, object]:
        """What a restart needs besides the model: optimiser, residual, sampler, schedule."""
        return {"opt": self.opt.state_dict(), "residual": self.residual.copy(),
                "rng": self.g.get_state(), "step": self.step}

    def restore(self, state: dict[str, object]) -> None:
        self.opt.load_state_dict(state["opt"])  # type: ignore[arg-type]
        residual = np.asarray(state["residual"], np.float32)
        if residual.shape != self.residual.shape:
            raise ValueError(f"residual has shape {residual.shape}, expected "
                             f"{self.residual.shape}")
        self.residual = residual
        self.g.set_state(state["rng"])  # type: ignore[arg-type]
        self.step = int(state["step"])  # type: ignore[call-overload]

    def train_round(self, base: np.ndarray, local_steps: int) -> tuple[np.ndarray, float]:
        """Train ``local_steps`` from ``base``; returns (delta W - base, mean loss)."""
        self.load(base)
        losses = run_steps(self.model, self.opt, self.x, self.y, self.step, local_steps,
                           self.total_steps, self.train_cfg, self.g)
        self.step += local_steps
        return self.weights() - base, float(np.mean(losses))

    def contribute(self, base: np.ndarray, base_hash: bytes, round_: int,
                   local_steps: int, author: bytes = ANONYMOUS) -> Contributed:
        """One round's work: train, then compress the delta with error feedback. ``author``
        (the vehicle's 20-byte address) goes into the payload."""
        if self.samples == 0:
            raise SitOut("no labelled samples to train on yet")
        self.step = round_ * local_steps  # the schedule follows the fleet's round, not ours
        delta, loss = self.train_round(base, local_steps)
        payload, self.residual = encode(delta, self.layout, base_hash, round_, self.codec,
                                        self.residual, author)
        return Contributed(payload=payload, samples=self.samples, loss=loss, delta=delta)
