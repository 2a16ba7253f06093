"""The chain layer's errors, in a leaf module: naming them must not import web3."""

from __future__ import annotations


class LedgerError(Exception):
    """The chain could not be reached or answered nonsense."""


class LedgerRevert(LedgerError):
    """The contract refused a transaction; ``reason`` is its revert message."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"{action} reverted: {reason}")
        self.reason = reason


class NoContractError(LedgerError):
    """The address holds no contract (a typo, another chain, or a contract not yet deployed)."""


class NoFundsError(LedgerError):
    """The signing account cannot pay for gas."""


class ChainLaunchError(LedgerError):
    """A local chain that cannot be started."""


class KeyFileError(Exception):
    """A key file that is missing, readable by others, or not a key."""
