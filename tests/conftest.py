"""Shared fixtures: a small trained model and its exports, made once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from chain.launch import Anvil
from models.checkpoint import save_checkpoint
from models.data import CropSet
from models.net import CropNet, NetConfig
from models.onnx_export import export
from models.train import TrainConfig, train
from sim.datasets import domains_crops
from sim.world import CLASSES

SMALL_DOMAINS = [("Town01", "ClearNoon"), ("Town10", "ClearNight"), ("Town04", "HardRainNoon"),
                 ("Town03", "FoggyMorning"), ("Town02", "ClearSunset")]


@dataclass(frozen=True)
class Trained:
    model: CropNet
    data: CropSet
    checkpoint: Path
    onnx: Path
    model_hash: str


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """CropNet trained for 300 steps on five domains: good enough to beat chance by far."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("trained")
    data = domains_crops(SMALL_DOMAINS, seed=11, frames_per_domain=30, size=32)
    model = CropNet(NetConfig())
    train(model, data, TrainConfig(steps=300, seed=0))
    ckpt = root / "model.pt"
    digest = save_checkpoint(ckpt, model, CLASSES)
    onnx_path = root / "model.onnx"
    export(model, CLASSES, onnx_path, data.images[:256])
    yield Trained(model, data, ckpt, onnx_path, digest)


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    """One anvil process for the session (tests deploy their own contracts on it)."""
    node = Anvil(tmp_path_factory.mktemp("anvil") / "state.json")
    with node:
        yield node
