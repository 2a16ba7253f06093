"""CropNet: a compact CNN that names the object in a camera crop.

Plain torch, no torchvision. GroupNorm everywhere, never BatchNorm: each vehicle's data is
non-IID (its own town and weather), so batch statistics differ per vehicle and would not
survive merging; GroupNorm normalises within each sample and merges cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class NetConfig:
    n_classes: int = 8
    input_size: int = 32  # crops are resized to input_size x input_size
    width: int = 16  # channels of the first stage; doubles at each of the three stride-2 convs
    groups: int = 8  # GroupNorm groups per layer; must divide every layer's channels


def conv_block(cin: int, cout: int, groups: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


class CropNet(nn.Module):
    """Six 3x3 conv blocks, three of them stride 2, then global average pooling.

    Strided convolutions rather than max-pooling: ONNX Runtime's int8 MaxPool is slower than
    its fp32 one, and with no pooling the quantised model runs only integer convolutions.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        assert config.input_size % 8 == 0, f"input_size {config.input_size} must divide by 8"
        assert config.width % config.groups == 0, "groups must divide width"
        self.config = config
        w, g = config.width, config.groups
        self.features = nn.Sequential(
            conv_block(3, w, g),  # (B, w, S, S)
            conv_block(w, 2 * w, g, stride=2),  # (B, 2w, S/2, S/2)
            conv_block(2 * w, 2 * w, g),
            conv_block(2 * w, 4 * w, g, stride=2),  # (B, 4w, S/4, S/4)
            conv_block(4 * w, 4 * w, g),
            conv_block(4 * w, 8 * w, g, stride=2),  # (B, 8w, S/8, S/8)
        )
        self.head = nn.Linear(8 * w, config.n_classes)

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x``: (B, 3, S, S) normalised RGB. Returns (logits (B, C), loss or None)."""
        h = self.features(x)  # (B, 8w, S/8, S/8)
        logits = self.head(h.mean(dim=(2, 3)))  # (B, C)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
