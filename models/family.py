"""The model families a fleet can learn, behind the one interface the learner and the fleets use.

The swarm sees a model as a flat weight vector (models/layout.py); what differs between the
crop classifier and the frame detector is only how a model is made, what it trains on, how a
step runs and how it is scored. Each family says that here, so the learner, the merge, the
codec and the chain never ask which one they carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from models import detect_eval, detect_train, evaluate, train
from models.classes import CLASSES
from models.data import CropSet, crops_from_frames
from models.detect_data import FrameSet, frames_to_set
from models.detector import DetConfig, FrameNet
from models.frame import Frame
from models.net import CropNet, NetConfig
from models.train import TrainConfig

Data = CropSet | FrameSet
Net = CropNet | FrameNet


class ModelFamily(Protocol):
    @property
    def name(self) -> str:
        """As checkpoints and configs spell it."""

    @property
    def metric(self) -> str:
        """What ``score`` returns: "accuracy" or "map50"."""

    @property
    def task(self) -> str:
        """What its ONNX export says it does (``models.runtime``): "classify" or "detect"."""

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the images it trains on: crops or whole frames."""

    def new_model(self) -> Net: ...

    def empty(self) -> Data: ...

    def of_frames(self, frames: list[Frame]) -> Data:
        """What it trains on from labelled frames (unlabelled ones give nothing)."""

    def concat(self, parts: list[Data]) -> Data: ...

    def prepare(self, data: Data) -> object: ...

    def run_steps(self, model: Net, opt: torch.optim.Optimizer, prepared: object,
                  first: int, steps: int, total: int, cfg: TrainConfig,
                  g: torch.Generator) -> list[float]: ...

    def score(self, model: Net, test: Data) -> float: ...


@dataclass(frozen=True)
class Classifier:
    """CropNet on labelled crops; scored by accuracy."""

    config: NetConfig = field(default_factory=NetConfig)
    name: str = "classifier"
    metric: str = "accuracy"
    task: str = "classify"

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.config.input_size, self.config.input_size

    def new_model(self) -> CropNet:
        return CropNet(self.config)

    def empty(self) -> CropSet:
        s = self.config.input_size
        return CropSet(np.zeros((0, s, s, 3), np.uint8), np.zeros((0,), np.int64))

    def of_frames(self, frames: list[Frame]) -> CropSet:
        """Each labelled box as a crop."""
        return crops_from_frames(frames, self.config.input_size)

    def concat(self, parts: list[Data]) -> CropSet:
        crops = [p for p in parts if isinstance(p, CropSet)]
        assert len(crops) == len(parts), "the classifier trains on crops"
        return CropSet.concat(crops) if crops else self.empty()

    def prepare(self, data: Data) -> tuple[np.ndarray, torch.Tensor]:
        assert isinstance(data, CropSet), "the classifier trains on crops"
        return train.tensors(data)

    def run_steps(self, model: Net, opt: torch.optim.Optimizer, prepared: object,
                  first: int, steps: int, total: int, cfg: TrainConfig,
                  g: torch.Generator) -> list[float]:
        assert isinstance(model, CropNet) and isinstance(prepared, tuple)
        x, y = prepared
        return train.run_steps(model, opt, x, y, first, steps, total, cfg, g)

    def score(self, model: Net, test: Data) -> float:
        assert isinstance(model, CropNet) and isinstance(test, CropSet)
        return evaluate.evaluate(model, test, CLASSES).accuracy


@dataclass(frozen=True)
class Detector:
    """FrameNet on labelled frames; scored by COCO mAP@0.5."""

    config: DetConfig = field(default_factory=DetConfig)
    name: str = "detector"
    metric: str = "map50"
    task: str = "detect"

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.config.height, self.config.width

    def new_model(self) -> FrameNet:
        return FrameNet(self.config)

    def empty(self) -> FrameSet:
        c = self.config
        return FrameSet(np.zeros((0, c.height, c.width, 3), np.uint8), (), (), (), ())

    def of_frames(self, frames: list[Frame]) -> FrameSet:
        """Whole frames at the network's size, with their boxes. A frame with no box at all
        is taken for unlabelled (a live camera's), not for an empty road: it is left out."""
        labelled = [f for f in frames if len(f.labels) or len(f.ignored)]
        return frames_to_set(labelled, self.config.width, self.config.height)

    def concat(self, parts: list[Data]) -> FrameSet:
        frames = [p for p in parts if isinstance(p, FrameSet)]
        assert len(frames) == len(parts), "the detector trains on frames"
        return FrameSet.concat(frames) if frames else self.empty()

    def prepare(self, data: Data) -> FrameSet:
        assert isinstance(data, FrameSet), "the detector trains on frames"
        return data

    def run_steps(self, model: Net, opt: torch.optim.Optimizer, prepared: object,
                  first: int, steps: int, total: int, cfg: TrainConfig,
                  g: torch.Generator) -> list[float]:
        assert isinstance(model, FrameNet) and isinstance(prepared, FrameSet)
        return detect_train.run_steps(model, opt, prepared, first, steps, total, cfg, g)

    def score(self, model: Net, test: Data) -> float:
        assert isinstance(model, FrameNet) and isinstance(test, FrameSet)
        return detect_eval.evaluate(model, test, CLASSES).map50


CLASSIFIER = Classifier()
DETECTOR = Detector()
FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (CLASSIFIER, DETECTOR)}
