"""Compile the Vyper contract in-process; the committed artifact must equal a fresh compile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONTRACTS = Path(__file__).parent / "contracts"
SOURCE = CONTRACTS / "SwarmLedger.vy"
ARTIFACT = CONTRACTS / "SwarmLedger.json"


def compile_ledger() -> dict[str, Any]:
    """{"abi", "bytecode", "compiler"} of SwarmLedger.vy, compiled with the installed vyper."""
    import vyper

    out = vyper.compile_code(SOURCE.read_text(), output_formats=["abi", "bytecode"])
    return {"contract": "SwarmLedger", "compiler": f"vyper {vyper.__version__}",
            "abi": out["abi"], "bytecode": out["bytecode"]}


def load_artifact() -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads(ARTIFACT.read_text())
    return artifact


def main() -> None:
    """Rewrite the committed artifact (run after editing the contract)."""
    ARTIFACT.write_text(json.dumps(compile_ledger(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {ARTIFACT}")


if __name__ == "__main__":
    main()
