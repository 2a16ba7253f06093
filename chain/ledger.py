"""The ``Ledger``: the one interface the agent and the sim use to reach the chain.

``Web3Ledger`` implements it over any JSON-RPC endpoint (embedded eth-tester, anvil, geth, an
L2). Every write is signed locally with the vehicle's key, sent once per signed transaction
(re-sending the *same* bytes after a dropped connection, so a commit is never doubled), retried
with backoff while the endpoint is down, and a revert surfaces as ``LedgerRevert`` carrying the
contract's reason.

Every error web3 can raise is turned into the ledger's own types (``chain.errors``) in one
place, ``_rpc``: callers never see a web3 or requests exception. Event scans go in bounded
block ranges, so providers that cap ``eth_getLogs`` work too.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TooManyRequests,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from chain.compile import load_artifact
from chain.errors import LedgerError, LedgerRevert, NoContractError, NoFundsError

log = logging.getLogger(__name__)

T = TypeVar("T")


def _reverts() -> tuple[type[Exception], ...]:
    """A revert reaches us as web3's ContractLogicError from a JSON-RPC node, but as eth-tester's
    own TransactionFailed from the embedded chain (its provider raises instead of returning an
    error). eth-tester is looked up, not imported: a vehicle on an RPC node never loads it or
    py-evm (~0.5 s of startup, 7 MB)."""
    tester = sys.modules.get("eth_tester.exceptions")
    return (ContractLogicError,) if tester is None else (ContractLogicError,
                                                         tester.TransactionFailed)


RPC_RETRIES = 30  # attempts while the endpoint is unreachable ...
RPC_BACKOFF_S = (0.1, 2.0)  # ... waiting from 0.1 s, doubling, up to 2 s between attempts
RECEIPT_TIMEOUT_S = 60.0
MEMBERS_PAGE = 256  # addresses per vehicles()/observers() call: the contract's MAX_PAGE
LOG_PAGE_BLOCKS = 10_000  # eth_getLogs range per request: what hosted providers commonly allow
# What a node answers when the transaction we (re-)send is already in its pool or mined.
ALREADY_SENT = ("already known", "known transaction", "already imported")
# What a node answers when a log query spans too much; the page is halved and asked again.
RANGE_TOO_LARGE = ("block range", "range too large", "query returned more than", "too many",
                   "limit exceeded")


class _Transient(Exception):
    """A condition worth retrying (endpoint down, rate-limited, transaction not yet mined)."""


@dataclass(frozen=True)
class ChainParams:
    """The fleet's round parameters, set by the operator (round-v2.md, "Parameters")."""
    min_peers: int = 1
    quorum: int = 1
    round_timeout: int = 120  # seconds of the first slot (plus one fallback slot)
    fallback_slot: int = 20  # seconds of every later slot
    finalize_window: int = 60  # seconds a commit has to reach quorum before it expires

    def args(self) -> tuple[int, int, int, int, int]:
        return (self.min_peers, self.quorum, self.round_timeout, self.fallback_slot,
                self.finalize_window)


@dataclass(frozen=True)
class LedgerStatus:
    address: str
    operator: str
    params: ChainParams
    vehicle_count: int
    genesis_hash: bytes
    rounds_final: int
    latest_model: bytes
    opened_at: int
    release_count: int


@dataclass(frozen=True)
class Entry:
    """One contribution as a commitment names it: who, with what weight, which payload."""
    sender: str
    samples: int
    payload_hash: bytes


@dataclass(frozen=True)
class RoundCommitment:
    round: int
    committer: str
    base_hash: bytes
    model_hash: bytes
    contributions_root: bytes
    contributions: tuple[Entry, ...]  # senders ascending: the canonical merge order
    committed_at: int  # block timestamp
    block: int


@dataclass(frozen=True)
class RoundFinal:
    round: int
    model_hash: bytes
    signers: tuple[str, ...]
    finalized_at: int  # block timestamp: the next round opens then
    block: int


@dataclass(frozen=True)
class MemberChange:
    """A registration, revocation or observer change, in chain order."""
    address: str
    role: str  # "vehicle" or "observer"
    added: bool
    block: int


@dataclass(frozen=True)
class ParamsChange:
    params: ChainParams
    block: int


ChainEvent = RoundCommitment | RoundFinal | MemberChange | ParamsChange


@dataclass(frozen=True)
class Release:
    version: int
    onnx_sha256: bytes
    size: int  # bytes: no download of it may be longer
    source_round: int
    uri: str
    revoked: bool


class Ledger(Protocol):
    """What a vehicle, an operator or the sim needs from the chain."""

    address: str

    def params(self, block: int | None = None) -> ChainParams: ...
    def status(self, block: int | None = None) -> LedgerStatus: ...
    def is_vehicle(self, vehicle: str) -> bool: ...
    def round_model(self, round_: int) -> bytes: ...
    def release(self, version: int) -> Release: ...
    def vehicles(self, block: int | None = None) -> list[str]: ...
    def observers(self, block: int | None = None) -> list[str]: ...
    def head(self) -> int: ...
    def first_block_at(self, timestamp: int, last: int) -> int: ...
    def head_time(self) -> tuple[int, int]: ...
    def latest_block_time(self) -> int: ...
    def events(self, from_block: int, to_block: int) -> list[ChainEvent]: ...
    def commitments(self, from_block: int = 0, to_block: int | None = None
                    ) -> list[RoundCommitment]: ...
    def register(self, vehicle: str) -> None: ...
    def revoke(self, vehicle: str) -> None: ...
    def set_observer(self, observer: str, allowed: bool) -> None: ...
    def set_params(self, params: ChainParams) -> None: ...
    def propose_operator(self, new_operator: str) -> None: ...
    def accept_operator(self) -> None: ...
    def commit_round(self, round_: int, base_hash: bytes, model_hash: bytes,
                     contributions: list[Entry]) -> RoundCommitment: ...
    def finalize_round(self, round_: int, model_hash: bytes,
                       signatures: dict[str, bytes]) -> RoundFinal: ...
    def publish_release(self, version: int, onnx_sha256: bytes, size: int, source_round: int,
                        uri: str) -> None: ...
    def revoke_release(self, version: int) -> None: ...


def rpc_message(e: BaseException) -> str:
    """The node's own words in a web3 error (its JSON-RPC ``message``), else the text."""
    msg = getattr(e, "message", None)
    if not msg and isinstance(getattr(e, "rpc_response", None), dict):
        msg = e.rpc_response.get("error", {}).get("message")  # type: ignore[attr-defined]
    lines = str(msg or e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def _rpc(what: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` once, translating every web3/requests error into the ledger's types."""
    try:
        return fn()
    except _reverts() as e:
        raise LedgerRevert(what, _reason(e)) from None
    except (ConnectionError, OSError, TimeoutError, TooManyRequests,
            ProviderConnectionError) as e:
        # requests' ConnectionError and Timeout are OSErrors; web3's provider errors wrap them.
        raise _Transient(type(e).__name__) from None
    except BadFunctionCallOutput:
        raise NoContractError(f"{what}: the contract did not answer as a SwarmLedger does "
                              "(wrong address or another chain?)") from None
    except Web3RPCError as e:
        text = rpc_message(e)
        if "insufficient funds" in text.lower():
            raise NoFundsError(f"{what}: the sending account has too little ETH to pay for "
                               f"gas ({text})") from None
        raise LedgerError(f"{what}: the node refused: {text}") from None
    except Web3Exception as e:
        raise LedgerError(f"{what}: {type(e).__name__}: {rpc_message(e)}") from None


def with_retry(what: str, fn: Callable[[], T], retries: int = RPC_RETRIES) -> T:
    """Call ``fn`` through ``_rpc``, retrying with backoff while the endpoint is unreachable."""
    delay = RPC_BACKOFF_S[0]
    for attempt in range(1, max(retries, 1) + 1):  # at least one try
        try:
            return _rpc(what, fn)
        except _Transient as e:
            if attempt == retries:
                raise LedgerError(f"{what}: chain endpoint unreachable after {attempt} attempts "
                                  f"({e})") from None
            log.warning("rpc_retry what=%s attempt=%d delay=%.1fs error=%s", what, attempt,
                        delay, e)
            time.sleep(delay)
            delay = min(RPC_BACKOFF_S[1], delay * 2)
    raise AssertionError("unreachable: the loop returns or raises")


def deploy(w3: Web3, account: LocalAccount, genesis_hash: bytes,
           params: ChainParams = ChainParams(), retries: int = RPC_RETRIES) -> str:
    """Deploy SwarmLedger; returns its address."""
    art = load_artifact()
    ctor = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(
        genesis_hash, *params.args())
    tx = with_retry("deploy", lambda: ctor.build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address),
         "chainId": w3.eth.chain_id}), retries)
    receipt = _send_signed(w3, account, tx, "deploy", retries)
    return str(receipt["contractAddress"])


def _send_signed(w3: Web3, account: LocalAccount, tx: dict[str, Any], what: str,
                 retries: int = RPC_RETRIES) -> Any:
    """Sign once; send (and re-send the same bytes) until a receipt; exactly-once by nonce."""
    signed = account.sign_transaction(tx)
    tx_hash = signed.hash

    def send() -> None:
        try:
            w3.eth.send_raw_transaction(signed.raw_transaction)
        except Web3RPCError as e:
            # Re-sending after a dropped response: the node already has it, or mined it.
            text = rpc_message(e).lower()
            if any(k in text for k in ALREADY_SENT):
                return
            if "nonce too low" in text and _mined(w3, tx_hash):
                return
            if "nonce too low" in text:
                raise LedgerError(f"{what}: nonce {tx['nonce']} of {account.address} was used by "
                                  "another transaction") from None
            raise

    with_retry(f"{what}: send", send, retries)

    def receipt() -> Any:
        try:
            return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S,
                                                       poll_latency=0.05)
        except (TimeExhausted, TransactionNotFound):
            # A restarted node may have lost the pending pool: send the same bytes again.
            send()
            raise _Transient("transaction not yet mined") from None

    rcpt = with_retry(f"{what}: receipt", receipt, retries)
    if rcpt["status"] != 1:
        raise LedgerRevert(what, "transaction failed on chain")
    return rcpt


def _mined(w3: Web3, tx_hash: bytes) -> bool:
    """Whether the node has a receipt for ``tx_hash``."""
    try:
        w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        return True
    except TransactionNotFound:
        return False


def require_contract(w3: Web3, address: str, retries: int = RPC_RETRIES) -> None:
    """Raise ``NoContractError`` unless ``address`` holds code on this chain."""
    checksum = Web3.to_checksum_address(address)
    code = with_retry(f"code at {address}", lambda: w3.eth.get_code(checksum), retries)
    if not code:
        raise NoContractError(f"contract {address}: no contract at this address on chain "
                              f"{with_retry('chain id', lambda: w3.eth.chain_id, retries)} "
                              "(wrong address, or another chain?)")


class Web3Ledger:
    """``Ledger`` over web3.py, signing with ``account`` (None: read-only)."""

    def __init__(self, w3: Web3, address: str, account: LocalAccount | None,
                 retries: int = RPC_RETRIES) -> None:
        self.w3, self.retries = w3, retries
        self._account = account
        self._checksum = Web3.to_checksum_address(address)
        self.address: str = self._checksum
        require_contract(w3, self.address, retries)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self._nonce: int | None = None
        self.last_gas_used = 0  # gas of the last transaction this ledger sent
        # Estimate against the block being built: its timestamp is now. The latest block's may
        # be minutes old on an idle chain (anvil mines on demand), and then a commit estimated
        # there is refused for a committer slot that has long passed. eth-tester has no
        # "pending" estimates, and its latest block is always current.
        self._estimate_at: str | None = None if isinstance(
            w3.provider, EthereumTesterProvider) else "pending"

    # --- views ---------------------------------------------------------------------------------

    @property
    def account(self) -> LocalAccount:
        if self._account is None:
            raise LedgerError("this ledger is read-only: give it a key to send transactions")
        return self._account

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        return with_retry(what, fn, self.retries)

    def _call(self, what: str, fn: Any, *args: Any, block: int | None = None) -> Any:
        """A view, as of ``block`` (None: the latest)."""
        at = "latest" if block is None else block
        return self._retry(what, lambda: fn(*args).call(block_identifier=at))

    def _logs(self, what: str, from_block: int, to_block: int | None) -> list[Any]:
        """The contract's logs in ``[from_block, to_block]``, fetched page by page."""
        end = self.head() if to_block is None else to_block
        out: list[Any] = []
        start, page = from_block, LOG_PAGE_BLOCKS
        while start <= end:
            stop = min(end, start + page - 1)
            try:
                out += self._retry(f"{what} {start}-{stop}", functools.partial(
                    self.w3.eth.get_logs, {"address": self._checksum, "fromBlock": start,
                                           "toBlock": stop}))
            except LedgerError as e:
                if page > 1 and any(k in str(e).lower() for k in RANGE_TOO_LARGE):
                    page //= 2  # the provider caps ranges or results: ask for less
                    continue
                raise
            start = stop + 1
        return out

    def params(self, block: int | None = None) -> ChainParams:
        c = self.contract.functions
        return ChainParams(*(int(self._call(name, getattr(c, name), block=block))
                             for name in ("min_peers", "quorum", "round_timeout",
                                          "fallback_slot", "finalize_window")))

    def status(self, block: int | None = None) -> LedgerStatus:
        """The contract's state as of ``block`` (None: the latest)."""
        c = self.contract.functions
        return LedgerStatus(
            address=self.address,
            operator=self._call("operator", c.operator, block=block),
            params=self.params(block),
            vehicle_count=self._call("vehicle_count", c.vehicle_count, block=block),
            genesis_hash=self._call("genesis_hash", c.genesis_hash, block=block),
            rounds_final=self._call("rounds_final", c.rounds_final, block=block),
            latest_model=self._call("latest_model", c.latest_model, block=block),
            opened_at=self._call("opened_at", c.opened_at, block=block),
            release_count=self._call("release_count", c.release_count, block=block),
        )

    def is_vehicle(self, vehicle: str) -> bool:
        return bool(self._call("is_vehicle", self.contract.functions.is_vehicle,
                               Web3.to_checksum_address(vehicle)))

    def round_model(self, round_: int) -> bytes:
        return bytes(self._call("round_model", self.contract.functions.round_model, round_))

    def release(self, version: int) -> Release:
        r = self._call(f"release {version}", self.contract.functions.release, version)
        return Release(version, bytes(r[0]), int(r[1]), int(r[2]), str(r[3]), bool(r[4]))

    def head(self) -> int:
        """The latest block number."""
        return int(self._retry("block number", lambda: self.w3.eth.block_number))

    def head_time(self) -> tuple[int, int]:
        """The latest block's number, and the chain's clock: the timestamp of the block the
        node is building now (the latest block's is up to a block interval old)."""
        block = self._retry("pending block", lambda: self.w3.eth.get_block("pending"))
        return int(block["number"]) - 1, int(block["timestamp"])

    def latest_block_time(self) -> int:
        """The newest block's timestamp: how fresh the node's view of the chain is."""
        block = self._retry("latest block", lambda: self.w3.eth.get_block("latest"))
        return int(block["timestamp"])

    def vehicles(self, block: int | None = None) -> list[str]:
        """The registered vehicles in the contract's rotation order (``vehicle_at``), as of
        ``block`` (None: the latest)."""
        return self._listing("vehicles", self.contract.functions.vehicles, block)

    def observers(self, block: int | None = None) -> list[str]:
        """The addresses the operator lets connect without being vehicles (``observer_at``),
        as of ``block``."""
        return self._listing("observers", self.contract.functions.observers, block)

    def _listing(self, what: str, page_fn: Any, block: int | None) -> list[str]:
        """A membership list, read page by page at one block (a consistent snapshot)."""
        at = self.head() if block is None else block
        out: list[str] = []
        while True:  # bounded: each page but the last is full, and the list is finite
            page = self._call(f"{what} from {len(out)}", page_fn, len(out), MEMBERS_PAGE,
                              block=at)
            out += [Web3.to_checksum_address(a) for a in page]
            if len(page) < MEMBERS_PAGE:
                return out

    def first_block_at(self, timestamp: int, last: int) -> int:
        """The first block in ``[0, last]`` whose timestamp is at least ``timestamp`` (``last``
        if none is): where a round that opened at ``timestamp`` has its first events. A binary
        search, ~log2(last) header reads, instead of reading the logs from block 0."""
        lo, hi = 0, last
        while lo < hi:
            mid = (lo + hi) // 2
            header = self._retry(f"block {mid}", functools.partial(self.w3.eth.get_block, mid))
            if int(header["timestamp"]) < timestamp:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        """Every event of the contract in ``[from_block, to_block]`` that a vehicle follows,
        in chain order (one ``eth_getLogs`` per page for all of them)."""
        raw = self._logs("contract logs", from_block, to_block)
        out: list[ChainEvent] = []
        for log_ in raw:
            event = self._decode(log_)
            if event is not None:
                out.append(event)
        return out

    def commitments(self, from_block: int = 0,
                    to_block: int | None = None) -> list[RoundCommitment]:
        """RoundCommitted events in a block range (polling; works on every endpoint)."""
        end = self.head() if to_block is None else to_block
        return [e for e in self.events(from_block, end) if isinstance(e, RoundCommitment)]

    def finals(self, from_block: int = 0, to_block: int | None = None) -> list[RoundFinal]:
        """RoundFinalized events in a block range."""
        end = self.head() if to_block is None else to_block
        return [e for e in self.events(from_block, end) if isinstance(e, RoundFinal)]

    def _decode(self, log_: Any) -> ChainEvent | None:
        topic = bytes(log_["topics"][0]) if log_["topics"] else b""
        name = self._topics.get(topic)
        if name is None:
            return None  # releases and operator moves: not a vehicle's business here
        a = getattr(self.contract.events, name)().process_log(log_).args
        block = int(log_["blockNumber"])
        if name == "RoundCommitted":
            return RoundCommitment(
                round=a.round, committer=a.committer, base_hash=bytes(a.base_hash),
                model_hash=bytes(a.model_hash), contributions_root=bytes(a.contributions_root),
                contributions=tuple(Entry(Web3.to_checksum_address(c["sender"]),
                                          int(c["samples"]), bytes(c["payload_hash"]))
                                    for c in a.contributions),
                committed_at=a.committed_at, block=block)
        if name == "RoundFinalized":
            return RoundFinal(a.round, bytes(a.model_hash), tuple(a.signers), a.finalized_at,
                              block)
        if name == "ParamsSet":
            return ParamsChange(ChainParams(a.min_peers, a.quorum, a.round_timeout,
                                            a.fallback_slot, a.finalize_window), block)
        if name == "ObserverSet":
            return MemberChange(a.observer, "observer", bool(a.allowed), block)
        return MemberChange(a.vehicle, "vehicle", name == "VehicleRegistered", block)

    @functools.cached_property
    def _topics(self) -> dict[bytes, str]:
        names = ("RoundCommitted", "RoundFinalized", "ParamsSet", "ObserverSet",
                 "VehicleRegistered", "VehicleRevoked")
        out = {}
        for entry in load_artifact()["abi"]:
            if entry.get("type") == "event" and entry["name"] in names:
                types = ",".join(_abi_type(i) for i in entry["inputs"])
                out[bytes(Web3.keccak(text=f"{entry['name']}({types})"))] = entry["name"]
        return out

    # --- writes --------------------------------------------------------------------------------

    def _transact(self, what: str, fn: Any) -> Any:
        sender = self.account.address
        gas = self._retry(what, lambda: fn.estimate_gas({"from": sender}, self._estimate_at))
        if self._nonce is None:
            self._nonce = self._retry("nonce", lambda: self.w3.eth.get_transaction_count(
                sender, "pending"))
        chain_id = self._retry("chain id", lambda: self.w3.eth.chain_id)
        nonce = self._nonce
        tx = self._retry(what, lambda: fn.build_transaction(
            {"from": sender, "nonce": nonce, "gas": gas + gas // 5, "chainId": chain_id}))
        try:
            rcpt = _send_signed(self.w3, self.account, tx, what, self.retries)
        except LedgerError:
            self._nonce = None  # unknown whether it landed: ask the chain next time
            raise
        self._nonce += 1
        self.last_gas_used = int(rcpt["gasUsed"])
        return rcpt

    def _receipt_event(self, rcpt: Any, what: str) -> ChainEvent:
        for log_ in rcpt["logs"]:
            event = self._decode(log_)
            if event is not None:
                return event
        raise LedgerError(f"{what}: the receipt carries no event")

    def register(self, vehicle: str) -> None:
        self._transact(f"register {vehicle}",
                       self.contract.functions.register(Web3.to_checksum_address(vehicle)))

    def revoke(self, vehicle: str) -> None:
        self._transact(f"revoke {vehicle}",
                       self.contract.functions.revoke(Web3.to_checksum_address(vehicle)))

    def set_observer(self, observer: str, allowed: bool) -> None:
        self._transact(f"set observer {observer}", self.contract.functions.set_observer(
            Web3.to_checksum_address(observer), allowed))

    def set_params(self, params: ChainParams) -> None:
        self._transact("set_params", self.contract.functions.set_params(*params.args()))

    def propose_operator(self, new_operator: str) -> None:
        self._transact("propose_operator", self.contract.functions.propose_operator(
            Web3.to_checksum_address(new_operator)))

    def accept_operator(self) -> None:
        self._transact("accept_operator", self.contract.functions.accept_operator())

    def commit_round(self, round_: int, base_hash: bytes, model_hash: bytes,
                     contributions: list[Entry]) -> RoundCommitment:
        """Commit round ``round_``; the entries are sorted here into canonical order."""
        ordered = sorted(contributions, key=lambda e: int(e.sender, 16))
        rcpt = self._transact(f"commit round {round_}", self.contract.functions.commit_round(
            round_, base_hash, model_hash,
            [(Web3.to_checksum_address(e.sender), e.samples, e.payload_hash) for e in ordered]))
        event = self._receipt_event(rcpt, f"commit round {round_}")
        assert isinstance(event, RoundCommitment)
        return event

    def finalize_round(self, round_: int, model_hash: bytes,
                       signatures: dict[str, bytes]) -> RoundFinal:
        """Finalise round ``round_`` with attestation signatures (65 bytes, v 0/1) by signer."""
        sigs = [(sig[64] + 27, sig[:32], sig[32:64])
                for _, sig in sorted(signatures.items(), key=lambda kv: int(kv[0], 16))]
        rcpt = self._transact(f"finalize round {round_}", self.contract.functions.finalize_round(
            round_, model_hash, sigs))
        event = self._receipt_event(rcpt, f"finalize round {round_}")
        assert isinstance(event, RoundFinal)
        return event

    def publish_release(self, version: int, onnx_sha256: bytes, size: int, source_round: int,
                        uri: str) -> None:
        self._transact(f"publish release {version}", self.contract.functions.publish_release(
            version, onnx_sha256, size, source_round, uri))

    def revoke_release(self, version: int) -> None:
        self._transact(f"revoke release {version}",
                       self.contract.functions.revoke_release(version))


def members(changes: list[MemberChange], role: str = "vehicle") -> list[str]:
    """Replay registry changes into the contract's order: a registration appends; a revocation
    moves the last member into the freed place (as ``revoke`` does on chain)."""
    order: list[str] = []
    for ch in changes:
        if ch.role != role:
            continue
        if ch.added and ch.address not in order:
            order.append(ch.address)
        elif not ch.added and ch.address in order:
            i = order.index(ch.address)
            last = order.pop()
            if i < len(order):
                order[i] = last
    return order


def _abi_type(param: dict[str, Any]) -> str:
    """A parameter's canonical type for an event signature (tuples spelled out)."""
    t = str(param["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + t[5:]
    return t


def _reason(e: Exception) -> str:
    text = str(getattr(e, "message", None) or e)
    for prefix in ("execution reverted: ", "execution reverted:"):
        if text.startswith(prefix):
            return text[len(prefix):].strip()
    return text
