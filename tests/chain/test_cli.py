"""``swarmdrive chain`` against a real anvil: keys, deploy, membership, and clear errors."""

from __future__ import annotations

import json
import os

import pytest

from agent.exit_codes import ExitCode
from chain.launch import fund
from tests.agent.test_cli import assert_one_line_error, swarmdrive


@pytest.mark.slow
def test_keygen_deploy_register_status(anvil, tmp_path):
    key = tmp_path / "operator.key"
    r = swarmdrive("chain", "keygen", "--keystore", key)
    assert r.returncode == 0, r.stderr
    operator = json.loads(r.stdout)["address"]
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    fund(anvil.web3(), operator)
    r = swarmdrive("chain", "deploy", "--rpc", anvil.url, "--keystore", key, "--min-peers", "3",
                   "--genesis", "ab" * 32)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["genesis"] == "ab" * 32
    contract = json.loads(r.stdout)["contract"]
    car = "0x" + os.urandom(20).hex()
    r = swarmdrive("chain", "register", car, "--rpc", anvil.url, "--keystore", key,
                   "--contract", contract)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["vehicle_count"] == 1
    r = swarmdrive("chain", "status", "--rpc", anvil.url, "--contract", contract)
    st = json.loads(r.stdout)
    assert st["operator"] == operator and st["params"]["min_peers"] == 3
    assert st["rounds_final"] == 0 and st["latest_model"] == "0x" + "ab" * 32
    r = swarmdrive("chain", "register", car, "--rpc", anvil.url, "--keystore", key,
                   "--contract", contract)
    assert_one_line_error(r, ExitCode.CHAIN_REVERT, "already registered")
    r = swarmdrive("chain", "rounds", "--rpc", anvil.url, "--contract", contract)
    assert r.returncode == 0 and r.stdout == ""
    chain = ["--rpc", anvil.url, "--contract", contract]
    r = swarmdrive("chain", "params", "--quorum", "2", "--keystore", key, *chain)
    assert_one_line_error(r, ExitCode.CHAIN_REVERT, "quorum must be a majority")
    r = swarmdrive("chain", "params", "--quorum", "1", "--finalize-window", "30", "--keystore",
                   key, *chain)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["finalize_window"] == 30
    watcher = "0x" + os.urandom(20).hex()
    r = swarmdrive("chain", "observe", watcher, "--keystore", key, *chain)
    assert r.returncode == 0, r.stderr
    assert [a.lower() for a in json.loads(r.stdout)["observers"]] == [watcher]
    heir = tmp_path / "heir.key"
    heir_address = json.loads(swarmdrive("chain", "keygen", "--keystore", heir).stdout)["address"]
    fund(anvil.web3(), heir_address)
    r = swarmdrive("chain", "propose-operator", heir_address, "--keystore", key, *chain)
    assert r.returncode == 0, r.stderr
    r = swarmdrive("chain", "accept-operator", "--keystore", heir, *chain)
    assert json.loads(r.stdout)["operator"] == heir_address
