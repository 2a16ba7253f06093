"""The Flower server: FedAvg over every vehicle each round, from swarmdrive's genesis model,
scoring each round's global model on the fleet-wide test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from models.classes import CLASSES
from models.data import CropSet
from models.evaluate import evaluate
from models.layout import ModelLayout
from models.net import CropNet, NetConfig

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    with np.load(str(cfg["data"])) as data:
        test = CropSet(data["test_images"], data["test_labels"])
        genesis = data["genesis"]
        vehicles = int(data["vehicles"])
    model = CropNet(NetConfig())
    model.load_state_dict(ModelLayout.of(model.state_dict()).unflatten(genesis))
    accuracy: dict[int, float] = {}

    def score(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        accuracy[server_round] = evaluate(model, test, CLASSES).accuracy
        return MetricRecord({"accuracy": accuracy[server_round]})

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=vehicles,
                      min_available_nodes=vehicles)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                   num_rounds=int(cfg["num-server-rounds"]), evaluate_fn=score)
    out = Path(str(cfg["result"]))
    out.with_suffix(".tmp").write_text(json.dumps({"accuracy": accuracy}))
    out.with_suffix(".tmp").replace(out)

