"""What an exported model promises its consumers: tensor names and metadata keys.

Shared by the exporter (torch) and the runtime (ONNX Runtime only), so serving never has to
import torch to know what to read.
"""

from __future__ import annotations

INPUT_NAME, OUTPUT_NAME = "crops", "logits"  # the crop classifier (task "classify")
FRAMES_NAME, HEAT_NAME, BOX_NAME = "frames", "heat", "box"  # the detector (task "detect")
META_PREFIX = "swarmdrive."
META_FORMAT = "1"
