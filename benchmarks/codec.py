"""Codec speed and ratio on a real model's delta.

The input is dense fp32: the difference between CropNet after and before a few hundred training
steps. MB/s counts the dense fp32 bytes (4 x weights) per second of encode or decode, median of
several runs, at the codec settings the fleet uses.

Prints {"encode_mb_per_s", "decode_mb_per_s", "ratio", ...} as its last line.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from benchmarks.common import setup_threads
from models.codec import CodecConfig, decode, encode
from models.layout import ModelLayout, flat_hash
from models.net import CropNet, NetConfig
from models.train import TrainConfig, train
from sim.datasets import domains_crops

CODEC = CodecConfig(density=0.02, bits=4)
RUNS = 50


def main() -> None:
    setup_threads()
    torch.manual_seed(0)
    model = CropNet(NetConfig())
    layout = ModelLayout.of(model.state_dict())
    before = layout.flatten(model.state_dict())
    data = domains_crops([("Town03", "ClearNoon"), ("Town10", "ClearNight")], 0, 20, 32)
    train(model, data, TrainConfig(steps=100, batch_size=64))
    delta = layout.flatten(model.state_dict()) - before
    base = bytes.fromhex(flat_hash(layout, before))
    payload, _ = encode(delta, layout, base, 1, CODEC)
    enc, dec = [], []
    for _ in range(RUNS):
        t = time.perf_counter()
        encode(delta, layout, base, 1, CODEC)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        decode(payload, layout)
        dec.append(time.perf_counter() - t)
    mb = delta.nbytes / 1e6
    print(json.dumps({
        "encode_mb_per_s": round(mb / statistics.median(enc), 1),
        "decode_mb_per_s": round(mb / statistics.median(dec), 1),
        "ratio": round(delta.nbytes / len(payload), 1),
        "dense_bytes": delta.nbytes, "payload_bytes": len(payload),
        "density": CODEC.density, "bits": CODEC.bits,
    }))


if __name__ == "__main__":
    main()
