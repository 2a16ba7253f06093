"""Chains to run on: the embedded eth-tester (no set-up) and an anvil process.

anvil comes from the npm package ``@foundry-rs/anvil`` (``npm install`` in the repository root
puts it in ``node_modules``); ``SWARMDRIVE_ANVIL`` overrides the path. The npm package's
``bin`` entry is a node wrapper that starts the real binary as its child: we run the platform
binary itself when it is there, and start either in its own process group so that ``stop()``
ends everything it started and frees the port.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import Wei

from chain.errors import ChainLaunchError

ROOT = Path(__file__).resolve().parent.parent
ANVIL_START_TIMEOUT_S = 20.0
# anvil's first default account (its well-known test mnemonic): funds local test chains only.
ANVIL_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def embedded() -> Web3:
    """An in-process EVM (eth-tester + py-evm) with funded, unlocked accounts, and a block
    clock that runs (``chain.tester``)."""
    from chain.tester import ClockedTesterProvider

    w3 = Web3(ClockedTesterProvider())
    # eth-tester turns every warning category on for the whole process when imported
    # (warnings.simplefilter("default")); put back Python's default of ignoring ResourceWarning,
    # or libp2p's sockets, closed by the OS at exit, fill the end of every sim run.
    warnings.filterwarnings("ignore", category=ResourceWarning)
    return w3


def fund(w3: Web3, to: str, wei: int = 10**20) -> None:
    """Send ``wei`` to ``to`` from the chain's funded account (eth-tester's or anvil's)."""
    if w3.eth.accounts:  # eth-tester: unlocked accounts
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": to, "value": Wei(wei)})
        w3.eth.wait_for_transaction_receipt(tx)
        return
    funder: LocalAccount = Account.from_key(ANVIL_FUNDER_KEY)
    signed = funder.sign_transaction({
        "to": to, "value": wei, "gas": 21000, "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
        "chainId": w3.eth.chain_id})
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))


ANVIL_BALANCE_ETH = 1_000_000
STATE_INTERVAL_S = 1  # anvil dumps its state this often, so a crash loses at most this much


def anvil_binary() -> str:
    platform = sorted(ROOT.glob("node_modules/@foundry-rs/anvil-linux-*/bin/anvil"))
    for candidate in (os.environ.get("SWARMDRIVE_ANVIL"), *map(str, platform),
                      str(ROOT / "node_modules/.bin/anvil"), shutil.which("anvil")):
        if candidate and Path(candidate).exists():
            return candidate
    raise ChainLaunchError("anvil not found: run 'npm install' in the repository root "
                           "(package @foundry-rs/anvil) or set SWARMDRIVE_ANVIL")


PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 20000
_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a process to listen on later (or again, after a
    restart). Picked below the kernel's ephemeral range: a port from that range can meanwhile
    become the local end of any outgoing connection, and the listener then fails to start."""
    try:
        ephemeral = int(PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    rng = random.Random()  # from os.urandom: processes picking at once pick apart
    for _ in range(100 if ephemeral - LOWEST_PORT >= 1000 else 0):
        port = rng.randrange(LOWEST_PORT, ephemeral)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """An anvil process on 127.0.0.1 that keeps its chain in ``state``.

    anvil writes the state every ``STATE_INTERVAL_S`` and on a clean stop; ``start()`` loads it,
    so ``stop()``/``start()`` and even ``kill()`` (a crash) keep the chain.
    """

    def __init__(self, state: Path, port: int | None = None, block_time_s: float = 0.0) -> None:
        """``block_time_s``: mine a block every so often (as a real chain does); 0 mines one
        per transaction."""
        self.state, self.port, self.block_time_s = state, port or free_port(), block_time_s
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Anvil:
        args = [anvil_binary(), "--host", "127.0.0.1", "--port", str(self.port),
                "--dump-state", str(self.state), "--state-interval", str(STATE_INTERVAL_S),
                # Dev accounts with 1M ETH instead of 10k: one anvil serves a whole test
                # session, and every fleet funds its keys from the first account.
                "--balance", str(ANVIL_BALANCE_ETH), "--silent"]
        if self.state.exists():
            args += ["--load-state", str(self.state)]
        if self.block_time_s:
            args += ["--block-time", f"{self.block_time_s:g}"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True)
        deadline = time.monotonic() + ANVIL_START_TIMEOUT_S
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 2}))
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr \
                    else ""
                raise ChainLaunchError(f"anvil exited with {self._proc.returncode}: {err[:300]}")
            try:
                if w3.eth.chain_id:
                    return self
            except Exception:  # not listening yet: connection refused and friends
                time.sleep(0.05)
        self.stop()
        raise ChainLaunchError(f"anvil did not answer on {self.url} within "
                               f"{ANVIL_START_TIMEOUT_S} s")

    def stop(self) -> None:
        """SIGTERM to the process group, which makes anvil write its state before exiting."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the process group: a crash, with no final state dump."""
        self._end(signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # anything the wrapper left behind in the group
        if proc.stderr is not None:
            proc.stderr.close()

    def web3(self) -> Web3:
        """A client for this node; provider-level retries off, the ledger retries itself."""
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 5},
                                      exception_retry_configuration=None))

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group has already gone
        os.killpg(pgid, sig)
