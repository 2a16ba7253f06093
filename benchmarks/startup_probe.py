"""Run one ``swarmdrive`` command and report which heavy libraries it imported.

``python -m benchmarks.startup_probe ARGS...`` behaves like ``swarmdrive ARGS...`` and prints one
last stderr line, ``startup-probe {"torch": false, ...}``; the startup benchmark and the tests
that keep serving torch-free read it.
"""

from __future__ import annotations

import json
import sys

from agent.cli import main

HEAVY = ("torch", "web3", "libp2p", "eth_tester", "trio")


def run() -> int:
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:  # --help and usage errors exit from argparse
        code = e.code if isinstance(e.code, int) else 0
    loaded = {name: name in sys.modules for name in HEAVY}
    print("startup-probe " + json.dumps(loaded), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(run())
