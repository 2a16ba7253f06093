"""Batch-1 latency and accuracy: torch vs ONNX Runtime fp32 vs ONNX Runtime int8.

Trains the all-domains model (or loads --model), exports fp32 ONNX and int8 ONNX calibrated
on local frames (a calibration drive, not the test set), then on the fleet-wide test set
measures accuracy and the largest |torch - ORT fp32| logit, and the median latency of one crop
per call on one thread (median over runs of the median over calls).

Prints {"torch_ms_p50", "ort_fp32_ms_p50", "ort_int8_ms_p50", "fp32_acc", "int8_acc",
"max_abs_logit_diff", "cpu"} last ("cpu": its model, and whether it has AVX-512 and VNNI).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    SIZE,
    all_domains_data,
    cpu,
    fleet_test,
    log,
    setup_threads,
    train_model,
)
from models.checkpoint import load_checkpoint
from models.evaluate import predict
from models.net import CropNet
from models.onnx_export import export, to_onnx
from models.preprocess import to_input
from models.quantize import quantize_int8
from models.runtime import OnnxClassifier
from sim.datasets import domains_crops
from sim.world import CLASSES, all_domains

CALLS = 2000  # calls per latency run
RUNS = 5


def latency_ms(fn: Callable[[np.ndarray], object], inputs: np.ndarray) -> float:
    """Median over RUNS of the median per-call latency, one (1, 3, S, S) input per call."""
    for i in range(100):  # warm-up
        fn(inputs[i % len(inputs)][None])
    medians = []
    for _ in range(RUNS):
        times = []
        for i in range(CALLS):
            x = inputs[i % len(inputs)][None]
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times) * 1e3)
    return statistics.median(medians)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, help="checkpoint to use instead of training one")
    args = p.parse_args()
    if args.model and not args.model.is_file():
        p.error(f"--model {args.model}: no such file")
    setup_threads()
    model = load_checkpoint(args.model)[0] if args.model else train_model(all_domains_data())
    if not isinstance(model, CropNet):
        p.error(f"--model {args.model}: a detector; this benchmark times the crop classifier "
                "(benchmarks.detection times the detector)")
    test = fleet_test()
    calibration = domains_crops(all_domains(), seed=7, frames_per_domain=2, size=SIZE).images
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp, "m.onnx"), Path(tmp, "m.int8.onnx")
        export(model, CLASSES, fp32_path, calibration)
        quantize_int8(to_onnx(model, CLASSES), calibration, int8_path)
        fp32, int8 = OnnxClassifier(fp32_path, threads=1), OnnxClassifier(int8_path, threads=1)

        torch_logits = predict(model, test.images)
        fp32_logits, int8_logits = fp32.logits(test.images), int8.logits(test.images)
        diff = float(np.abs(torch_logits - fp32_logits).max())

        torch.set_num_threads(1)
        inputs = to_input(test.images[:500])
        with torch.inference_mode():
            t_torch = latency_ms(lambda x: model(torch.from_numpy(x)), inputs)
        feed = "crops"
        t_fp32 = latency_ms(lambda x: fp32.session.run(None, {feed: x}), inputs)
        t_int8 = latency_ms(lambda x: int8.session.run(None, {feed: x}), inputs)
    result = {
        "torch_ms_p50": round(t_torch, 4),
        "ort_fp32_ms_p50": round(t_fp32, 4),
        "ort_int8_ms_p50": round(t_int8, 4),
        "fp32_acc": round(float(np.mean(fp32_logits.argmax(1) == test.labels)), 4),
        "int8_acc": round(float(np.mean(int8_logits.argmax(1) == test.labels)), 4),
        "max_abs_logit_diff": diff,
        "test_crops": len(test),
        "cpu": cpu(),
    }
    log(f"torch accuracy {np.mean(torch_logits.argmax(1) == test.labels):.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
