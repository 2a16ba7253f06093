"""FrameNet: a small anchor-free detector that finds and names every object in a camera frame.

CenterNet's idea ("Objects as Points", Zhou et al. 2019) with TTFNet's box head (Liu et al.
2020): a per-class heatmap whose peaks are object centres, and at every cell the distances
(left, top, right, bottom) from that cell's centre to the object's edges. Decoding is a 3x3
local-maximum test and a top-k, no anchors and no NMS, so it is a few numpy lines the server
runs (models/detect_decode.py); training targets and the loss are in models/detect_loss.py.
Why this family rather than FCOS or NanoDet is argued in docs/detector.md.

Plain 3x3 convolutions and GroupNorm, as in CropNet (models/net.py): GroupNorm merges cleanly
across non-IID vehicles. A four-stage backbone (strides 2..16) feeds a top-down pyramid that
ends at stride 4, where the heads run: small objects (12 px tall, 5 px wide) need that
resolution, and the stride-16 stage gives the large receptive field that a bus filling half
the frame needs.

``LIGHT`` is the same network with depthwise-separable blocks: 2.4x faster at int8 and 13 points
of mAP@0.5 worse (docs/detector.md), for vehicles whose CPU cannot afford FrameNet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.net import conv_block


def separable_block(cin: int, cout: int, groups: int, stride: int = 1) -> nn.Sequential:
    """3x3 depthwise, 1x1 pointwise, GroupNorm, ReLU. No norm or ReLU between the two
    convolutions (Xception's finding): together they are one factorised 3x3 convolution, and
    each norm costs ~0.1 ms a frame on one core."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


Block = Callable[..., nn.Sequential]  # (cin, cout, groups, stride=1): conv_block's signature


def stage(cin: int, cout: int, groups: int, depth: int, block: Block) -> nn.Sequential:
    """``depth`` blocks, the first halving the resolution."""
    return nn.Sequential(block(cin, cout, groups, stride=2),
                         *(block(cout, cout, groups) for _ in range(depth - 1)))


@dataclass(frozen=True)
class DetConfig:
    n_classes: int = 8
    width: int = 320  # frames are resized to width x height before the network
    height: int = 240
    channels: tuple[int, int, int, int] = (16, 32, 64, 128)  # stages at strides 2, 4, 8, 16
    neck: int = 32  # channels of the pyramid and the heads
    groups: int = 8  # GroupNorm groups; must divide every channel count
    stride: int = 4  # of the heads: one output cell per 4x4 pixels
    depths: tuple[int, int, int] = (2, 2, 3)  # blocks in stages 2, 3 and 4
    separable: bool = False  # depthwise-separable blocks after the first convolution

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the output maps."""
        return self.height // self.stride, self.width // self.stride


# Depth is cheap at stride 16 (a sixteenth of the cells of stride 4): one more block there.
LIGHT = DetConfig(separable=True, depths=(2, 2, 4))


class FrameNet(nn.Module):
    """Frame in, two maps out: class heatmap logits and box distances (pixels, >= 0)."""

    def __init__(self, config: DetConfig) -> None:
        super().__init__()
        assert config.width % 16 == 0 and config.height % 16 == 0, (
            f"frame size {config.width}x{config.height} must divide by 16")
        assert all(c % config.groups == 0 for c in (*config.channels, config.neck)), (
            "groups must divide every channel count")
        self.config = config
        c1, c2, c3, c4 = config.channels
        g, n = config.groups, config.neck
        d2, d3, d4 = config.depths
        block = separable_block if config.separable else conv_block
        # A full 3x3 convolution first, even when separable: on three input channels a
        # depthwise one would only scale colours.
        self.stage1 = conv_block(3, c1, g, stride=2)  # (B, c1, H/2, W/2)
        self.stage2 = stage(c1, c2, g, d2, block)  # (B, c2, H/4, W/4)
        self.stage3 = stage(c2, c3, g, d3, block)  # (B, c3, H/8, W/8)
        self.stage4 = stage(c3, c4, g, d4, block)  # (B, c4, H/16, W/16)
        # Top-down pyramid: 1x1 laterals to `neck` channels, nearest upsampling, sums.
        self.lateral2 = nn.Conv2d(c2, n, 1)
        self.lateral3 = nn.Conv2d(c3, n, 1)
        self.lateral4 = nn.Conv2d(c4, n, 1)
        # Two 3x3 blocks at stride 4: pedestrians and signals are decided here, a few cells wide.
        self.smooth = nn.Sequential(block(n, n, g), block(n, n, g))
        self.heat = nn.Conv2d(n, config.n_classes, 1)
        self.box = nn.Conv2d(n, 4, 1)
        # Start every heatmap at a 1% prior, so the first steps are not swamped by background
        # (RetinaNet's focal-loss initialisation).
        assert self.heat.bias is not None
        nn.init.constant_(self.heat.bias, -4.6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, 3, H, W) normalised RGB -> heatmap logits (B, C, H/4, W/4) and box
        distances (B, 4, H/4, W/4) in input pixels: left, top, right, bottom of the cell centre.
        """
        c2 = self.stage2(self.stage1(x))  # (B, c2, H/4, W/4)
        c3 = self.stage3(c2)  # (B, c3, H/8, W/8)
        c4 = self.stage4(c3)  # (B, c4, H/16, W/16)
        p = self.lateral4(c4)
        p = self.lateral3(c3) + F.interpolate(p, scale_factor=2.0, mode="nearest")
        p = self.lateral2(c2) + F.interpolate(p, scale_factor=2.0, mode="nearest")
        p = self.smooth(p)  # (B, neck, H/4, W/4)
        # Distances in units of the stride through softplus: smooth, positive, never dead.
        return self.heat(p), F.softplus(self.box(p)) * self.config.stride

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
