"""The embedded EVM (eth-tester + py-evm) with a block clock that runs like a real node's.

eth-tester stamps the next block when it mines the previous one, so a transaction sent a minute
later still runs at the old time, and estimates and calls run at the last block's time: rules
that read ``block.timestamp`` (committer slots, expiry) would see a stopped clock. Here the
pending block is restamped before each call that reads it, with the last block's time plus the
wall-clock time since it was mined, and gas estimates run on the pending block, as a real node
estimates on the block it builds. (Blocks must be at least a second apart, so a burst of
transactions puts the chain ahead of the wall clock; from there it runs on at the wall clock's
pace.) Imported only when an embedded chain is made: eth-tester is slow to import.
"""

from __future__ import annotations

import time
from typing import Any

from eth.exceptions import InvalidInstruction, Revert
from eth_tester.exceptions import TransactionFailed
from eth_utils.decorators import replace_exceptions
from web3 import EthereumTesterProvider

# Calls whose result depends on block.timestamp (and reading the pending block, the clock).
CLOCKED = frozenset({"eth_sendTransaction", "eth_sendRawTransaction", "eth_call",
                     "eth_estimateGas"})


class ClockedTesterProvider(EthereumTesterProvider):
    def __init__(self) -> None:
        super().__init__()
        self._head_seen = (0, 0.0)  # the last block's timestamp, and when we first saw it
        backend: Any = self.ethereum_tester.backend  # type: ignore[union-attr]
        chain = backend.chain
        latest_only = backend.estimate_gas

        @replace_exceptions({Revert: TransactionFailed, InvalidInstruction: TransactionFailed})
        def estimate_gas(transaction: Any, block_number: Any = "latest") -> Any:
            if block_number != "latest":
                return latest_only(transaction, block_number)
            # py-evm estimates on the last mined block; a node estimates on the pending one.
            from eth.vm.spoof import SpoofTransaction

            tx = backend._get_normalized_and_unsigned_evm_transaction(
                {**transaction, "gas": 21000}, block_number)
            return chain.estimate_gas(SpoofTransaction(tx, from_=transaction["from"]),
                                      at_header=backend.chain.header)

        backend.estimate_gas = estimate_gas

    @property
    def _chain(self) -> Any:
        return self.ethereum_tester.backend.chain  # type: ignore[union-attr]

    def make_request(self, method: Any, params: Any) -> Any:
        if method in CLOCKED or (method == "eth_getBlockByNumber" and params
                                 and params[0] == "pending"):
            head = self._note_head()
            elapsed = int(time.time() - self._head_seen[1])
            now = max(int(time.time()), head + max(1, elapsed))
            if self._chain.header.timestamp < now:
                self._chain.header = self._chain.header.copy(timestamp=now)
        response = super().make_request(method, params)
        self._note_head()  # a transaction mines a block: its time starts now
        return response

    def _note_head(self) -> int:
        head: int = self._chain.get_canonical_head().timestamp
        if head != self._head_seen[0]:
            self._head_seen = (head, time.time())
        return head
