"""One vehicle as a Flower client: the round's model in, ``local-steps`` of swarmdrive's own
training loop on the vehicle's crops, the whole model back (FedAvg's contract)."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from models.data import CropSet
from models.net import CropNet, NetConfig
from models.train import TrainConfig, make_optimizer, run_steps, tensors

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    vehicle = int(context.node_config["partition-id"])
    cfg = context.run_config
    steps, rounds = int(cfg["local-steps"]), int(cfg["num-server-rounds"])
    with np.load(str(cfg["data"])) as data:
        x, y = tensors(CropSet(data[f"images_{vehicle}"], data[f"labels_{vehicle}"]))
    round_ = int(str(msg.content.config_records["config"]["server-round"]))  # 1-based
    tcfg = TrainConfig(steps=rounds * steps, batch_size=int(cfg["batch-size"]),
                       lr=float(cfg["lr"]))
    model = CropNet(NetConfig())
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    g = torch.Generator().manual_seed(vehicle * 1000 + round_)
    losses = run_steps(model, make_optimizer(model, tcfg), x, y, (round_ - 1) * steps, steps,
                       tcfg.steps, tcfg, g)
    return Message(RecordDict({
        "arrays": ArrayRecord(model.state_dict()),
        "metrics": MetricRecord({"train_loss": float(np.mean(losses)), "num-examples": len(y)}),
    }), reply_to=msg)
