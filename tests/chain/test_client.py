"""The chain client against a real anvil when the network and the node misbehave."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from eth_account import Account

from agent.exit_codes import ExitCode
from chain import ledger as ledger_module
from chain.errors import NoContractError
from chain.launch import Anvil, fund
from chain.ledger import Web3Ledger, deploy
from tests.agent.test_cli import assert_one_line_error, swarmdrive
from tests.chain.conftest import GENESIS, finish_alone, one_vehicle
from tests.chain.rpc_proxy import Faults, rpc_proxy


def _web3(url: str):  # type: ignore[no-untyped-def]
    from web3 import Web3

    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10},
                                  exception_retry_configuration=None))


def test_a_transaction_whose_response_was_lost_is_reported_as_landed_once(anvil):
    w3 = anvil.web3()
    op, car = Account.create(), Account.create()
    fund(w3, op.address)
    address = deploy(w3, op, GENESIS)
    faults = Faults(drop_responses={"eth_sendRawTransaction": 1})
    with rpc_proxy(anvil.url, faults) as url:
        Web3Ledger(_web3(url), address, op).register(car.address)  # must not raise
    assert faults.seen.count("eth_sendRawTransaction") == 2  # the same bytes, sent again
    direct = Web3Ledger(w3, address, None)
    assert direct.is_vehicle(car.address) and direct.status().vehicle_count == 1
    assert w3.eth.get_transaction_count(op.address) == 2  # deploy + one register, not two


def test_log_scans_are_paged_for_providers_that_cap_block_ranges(anvil, monkeypatch):
    w3 = anvil.web3()
    address, _, car = one_vehicle(w3)
    ledger = Web3Ledger(w3, address, car)
    base = GENESIS
    for r in range(3):
        model = (7000 + r).to_bytes(32, "big")
        finish_alone(ledger, r, base, model)
        base = model
    monkeypatch.setattr(ledger_module, "LOG_PAGE_BLOCKS", 64)
    faults = Faults(max_log_blocks=5)
    with rpc_proxy(anvil.url, faults) as url:
        capped = Web3Ledger(_web3(url), address, None)
        assert [c.round for c in capped.commitments()] == [0, 1, 2]
        assert capped.vehicles() == [car.address]
    assert faults.seen.count("eth_getLogs") > 3  # it really went page by page


@pytest.mark.slow
def test_every_client_call_refuses_an_address_without_code(anvil, tmp_path):
    empty = "0x" + os.urandom(20).hex()
    with pytest.raises(NoContractError, match="no contract at this address"):
        Web3Ledger(anvil.web3(), empty, None)
    key = tmp_path / "op.key"
    key.write_text("0x" + "33" * 32)
    key.chmod(0o600)
    for argv in (["status"], ["rounds"],
                 ["register", "0x" + "cd" * 20, "--keystore", str(key)]):
        r = swarmdrive("chain", *argv, "--rpc", anvil.url, "--contract", empty)
        assert_one_line_error(r, ExitCode.CHAIN_NO_CONTRACT, "no contract at this address")


@pytest.mark.slow
def test_the_readme_walk_through_funds_a_fresh_key_before_deploying(anvil, tmp_path):
    key = tmp_path / "operator.key"
    r = swarmdrive("chain", "keygen", "--keystore", key)
    assert r.returncode == 0, r.stderr
    operator = json.loads(r.stdout)["address"]
    r = swarmdrive("chain", "deploy", "--rpc", anvil.url, "--keystore", key,
                   "--genesis", "ab" * 32)
    assert_one_line_error(r, ExitCode.CHAIN_NO_FUNDS, operator, "swarmdrive chain fund")
    r = swarmdrive("chain", "fund", operator, "--rpc", anvil.url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["balance_wei"] == 100 * 10**18
    r = swarmdrive("chain", "deploy", "--rpc", anvil.url, "--keystore", key, "--genesis", "ab" * 32)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["operator"] == operator


@pytest.mark.slow
def test_a_hung_endpoint_fails_within_30_seconds_with_one_line(anvil):
    with rpc_proxy(anvil.url, Faults(hang=True)) as url:
        # The deadline is the subprocess timeout: past 30 s the test fails with TimeoutExpired.
        r = swarmdrive("chain", "status", "--rpc", url, "--contract", "0x" + "ab" * 20,
                       timeout=30)
    assert_one_line_error(r, ExitCode.CHAIN_UNREACHABLE, "unreachable")


def _dumped_block(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["best_block_number"])
    except (OSError, ValueError, KeyError):
        return -1  # not written yet, or caught half-way through a write


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As a restarted node binds: a client's connection in TIME_WAIT does not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.slow
def test_anvil_stop_ends_its_whole_group_and_a_crash_keeps_the_dumped_chain(tmp_path):
    node = Anvil(tmp_path / "state.json").start()
    try:
        w3 = node.web3()
        address, _, car = one_vehicle(w3)
        registered_in = w3.eth.block_number
        # Wait for the periodic dump that holds the registration (an event: the file changes).
        deadline = time.monotonic() + 30
        while _dumped_block(tmp_path / "state.json") < registered_in:
            assert time.monotonic() < deadline, "anvil wrote no periodic state dump"
            time.sleep(0.1)
        pid = node.pid
        assert pid is not None
        node.kill()  # a crash: no dump on exit
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # nothing of the group survives
        assert _port_is_free(node.port)
        node.start()
        assert Web3Ledger(node.web3(), address, None).is_vehicle(car.address)
        pid = node.pid
        node.stop()
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # type: ignore[arg-type]
        assert _port_is_free(node.port)
    finally:
        node.stop()
