"""``swarmdrive chain`` against a real anvil: keys, deploy, membership, and clear errors."""

from __future__ import annotations

import json
import os

from agent.exit_codes import ExitCode
from chain.launch import fund
from tests.agent.test_cli import assert_one_line_error, swarmdrive


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


def test_missing_settings_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("SWARMDRIVE_RPC", raising=False)
    monkeypatch.delenv("SWARMDRIVE_CONTRACT", raising=False)
    r = swarmdrive("chain", "status")
    assert_one_line_error(r, ExitCode.USAGE, "--rpc URL")
    r = swarmdrive("chain", "status", "--rpc", "http://127.0.0.1:1")
    assert_one_line_error(r, ExitCode.USAGE, "--contract ADDRESS")
    r = swarmdrive("chain", "deploy", "--rpc", "http://127.0.0.1:1")
    assert_one_line_error(r, ExitCode.USAGE, "--keystore FILE")


def test_key_file_problems(tmp_path):
    loose = tmp_path / "loose.key"
    loose.write_text("0x" + "11" * 32)
    loose.chmod(0o644)
    r = swarmdrive("chain", "deploy", "--rpc", "http://127.0.0.1:1", "--keystore", loose)
    assert_one_line_error(r, ExitCode.KEY_FILE, "loose.key", "chmod 600")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    junk.chmod(0o600)
    r = swarmdrive("chain", "deploy", "--rpc", "http://127.0.0.1:1", "--keystore", junk)
    assert_one_line_error(r, ExitCode.KEY_FILE, "junk.key")
    r = swarmdrive("chain", "deploy", "--rpc", "http://127.0.0.1:1", "--keystore",
                   tmp_path / "none.key")
    assert_one_line_error(r, ExitCode.KEY_FILE, "no such file")


def test_unreachable_endpoint(tmp_path):
    r = swarmdrive("chain", "status", "--rpc", "http://127.0.0.1:1",
                   "--contract", "0x" + "ab" * 20)
    assert_one_line_error(r, ExitCode.CHAIN_UNREACHABLE, "unreachable")
