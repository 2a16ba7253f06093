"""Why a fleet must learn together: one town/weather does not generalise to the fleet.

Trains CropNet with the same budget (steps, batch, number of frames) on (a) frames from one
(town, weather) domain and (b) the same number of frames spread over every domain, and scores
both on the same fleet-wide test set (every town under every weather, drives never trained on).
(a) is repeated for several single domains; one_domain_acc is their mean.

Prints {"one_domain_acc", "all_domains_acc", "gap_points", "per_domain": {...}} last.
"""

from __future__ import annotations

import json
import statistics

from benchmarks.common import (
    all_domains_data,
    fleet_test,
    log,
    one_domain_data,
    setup_threads,
    train_model,
)
from models.evaluate import evaluate
from sim.world import CLASSES

SINGLE_DOMAINS = [("Town01", "ClearNoon"), ("Town10", "CloudyNoon"), ("Town04", "ClearSunset")]


def main() -> None:
    setup_threads()
    test = fleet_test()
    log(f"fleet-wide test set: {len(test)} crops")
    all_acc = evaluate(train_model(all_domains_data()), test, CLASSES).accuracy
    log(f"all domains: {all_acc:.4f}")
    per_domain = {}
    for town, weather in SINGLE_DOMAINS:
        acc = evaluate(train_model(one_domain_data(town, weather)), test, CLASSES).accuracy
        per_domain[f"{town}/{weather}"] = round(acc, 4)
        log(f"{town}/{weather}: {acc:.4f}")
    one_acc = statistics.mean(per_domain.values())
    print(json.dumps({"one_domain_acc": round(one_acc, 4), "all_domains_acc": round(all_acc, 4),
                      "gap_points": round(100 * (all_acc - one_acc), 1),
                      "per_domain": per_domain, "test_crops": len(test)}))


if __name__ == "__main__":
    main()
