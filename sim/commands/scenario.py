"""``swarmdrive scenario FILE --out DIR``: run a scenario (``scenarios/*.toml``) on a fleet of
real processes and write its report (``DIR/report/index.html``) and ``DIR/result.json``."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path

from agent.commands.args import UsageError, add_command, check_output_dir, int_range

BAR = 30


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, common, "scenario", "run a scenario on a fleet of real processes",
                    "Start anvil, mosquitto and a serve and a learn process per vehicle, fire "
                    "the scenario's events (kills, restarts, outages, new vehicles) as the chain "
                    "reaches their rounds, and write a report of what happened.")
    p.add_argument("file", type=Path, metavar="FILE", help="the scenario (TOML)")
    p.add_argument("--out", type=Path,
                   help="folder for report/, result.json and the fleet's files (fleet/)")
    p.add_argument("--check", action="store_true", help="only check the scenario file")
    p.add_argument("--threads", type=int_range(1, 256), default=2,
                   help="torch CPU threads of the baselines")
    p.set_defaults(run=run)


class Progress:
    """A bar on a terminal, plain lines otherwise (journald, CI logs)."""

    def __init__(self, rounds: int) -> None:
        self.rounds, self.tty = rounds, sys.stderr.isatty()

    def __call__(self, line: str) -> None:
        m = re.match(r"round (\d+)/", line)
        if self.tty and m:
            done = int(m.group(1)) * BAR // self.rounds
            print(f"\r[{'#' * done}{'.' * (BAR - done)}] {line}", end="", file=sys.stderr,
                  flush=True)
        else:
            print(("\n" if self.tty else "") + line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from sim.scenario import load

    scenario = load(args.file)
    if args.check:
        print(json.dumps(scenario.model_dump()))
        return 0
    if args.out is None:
        raise UsageError("--out DIR: where the report goes, is needed to run a scenario")
    check_output_dir(args.out)
    import torch

    from models.net import NetConfig
    from sim import report
    from sim.datasets import fleet_test_set
    from sim.director import Director, run_baselines

    torch.set_num_threads(args.threads)
    # SIGTERM unwinds like Ctrl-C, so that every process the run started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: _raise_interrupt())
    test = fleet_test_set(scenario.fleet.seed, 8, NetConfig().input_size)
    progress = Progress(scenario.fleet.rounds)
    progress(f"scenario {scenario.name}: {scenario.fleet.vehicles} vehicles, "
             f"{scenario.fleet.rounds} rounds, {len(scenario.events)} events; files in "
             f"{args.out / 'fleet'}")
    record = Director(scenario, args.out / "fleet", test, progress).run()
    if scenario.baselines and record.failure is None:
        progress("baselines: each vehicle alone, then one central model")
        record.baselines = run_baselines(scenario)
    result = record.to_json()
    page = report.write(result, args.out)
    progress(f"report: {page}")
    final = record.final
    print(json.dumps({"scenario": scenario.name, "failure": record.failure,
                      "rounds": len(record.rounds), "seconds": record.seconds,
                      "chain_model_hash": final.get("chain_model_hash"),
                      "expected": final.get("expected"),
                      "all_serve_expected": final.get("all_serve_expected"),
                      "events": [{"what": e.what, "recovery_s": e.recovery_s}
                                 for e in record.events],
                      "report": str(page)}))
    return 0 if record.failure is None and final.get("all_serve_expected") else 1


def _raise_interrupt() -> None:
    raise KeyboardInterrupt
