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
    r = swarmdrive("chain", "deploy", "--rpc", anvil.url, "--keystore", key, "--min-peers", "3")
    assert r.returncode == 0, r.stderr
    contract = json.loads(r.stdout)["contract"]
    car = "0x" + os.urandom(20).hex()
    r = swarmdrive("chain", "register", car, "--rpc", anvil.url, "--keystore", key,
                   "--contract", contract)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["vehicle_count"] == 1
    r = swarmdrive("chain", "status", "--rpc", anvil.url, "--contract", contract)
    st = json.loads(r.stdout)
    assert st["operator"] == operator and st["min_peers"] == 3 and st["rounds_committed"] == 0
    r = swarmdrive("chain", "register", car, "--rpc", anvil.url, "--keystore", key,
                   "--contract", contract)
    assert_one_line_error(r, ExitCode.CHAIN_REVERT, "already registered")
    r = swarmdrive("chain", "rounds", "--rpc", anvil.url, "--contract", contract)
    assert r.returncode == 0 and r.stdout == ""
