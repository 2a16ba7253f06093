"""The recognisable classes, in label-id order.

The order is part of the YOLO label format and of every exported model: append, never
reorder. The simulator draws these classes; a vehicle's cameras and models name them.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_light",
    "stop_sign",
)
