"""Evaluation: accuracy, per-class recall and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data import CropSet
from models.net import CropNet
from models.preprocess import to_input

EVAL_BATCH = 512


@dataclass(frozen=True)
class EvalReport:
    accuracy: float
    per_class_recall: dict[str, float | None]  # None for a class absent from the test set
    confusion: list[list[int]]  # confusion[true][predicted]
    n: int

    def to_dict(self) -> dict[str, object]:
        return {"accuracy": self.accuracy, "per_class_recall": self.per_class_recall,
                "confusion": self.confusion, "n": self.n}


def report(predicted: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> EvalReport:
    """Scores of ``predicted`` class ids against the true ``labels``."""
    k = len(classes)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    recall = {c: (float(confusion[i, i] / support[i]) if support[i] else None)
              for i, c in enumerate(classes)}
    n = len(labels)
    return EvalReport(accuracy=float(np.trace(confusion) / n) if n else 0.0,
                      per_class_recall=recall, confusion=confusion.tolist(), n=n)


@torch.no_grad()
def predict(model: CropNet, images: np.ndarray) -> np.ndarray:
    """Logits (N, C) for uint8 crops."""
    was_training = model.training
    model.eval()
    out = [model(torch.from_numpy(to_input(images[i : i + EVAL_BATCH])))[0]
           for i in range(0, len(images), EVAL_BATCH)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.n_classes), np.float32)


def evaluate(model: CropNet, data: CropSet, classes: tuple[str, ...]) -> EvalReport:
    return report(predict(model, data.images).argmax(axis=1), data.labels, classes)
