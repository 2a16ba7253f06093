"""Exit codes, banded by component, and which errors map to them.

systemd restarts a daemon that exits with a non-fatal code; a fatal one (bad config, bad
model file, unknown town) will fail again the same way, so the unit's
``RestartPreventExitStatus=`` lists the fatal band.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2  # argparse: unknown flag, missing argument, values that do not fit together
    # 10-19 input and configuration (fatal: the same input fails again)
    BAD_VALUE = 10  # an unknown town, weather or other bad argument value
    CAMERA = 11  # a camera, video or image folder that cannot be opened
    BAD_INPUT_FILE = 12  # a corrupt image or label file, or a folder with some
    OUTPUT = 13  # an output path that cannot be written (checked before any work)
    CONFIG = 14  # a vehicle config that fails its checks (swarmdrive config check FILE)
    # 20-29 models (fatal)
    MODEL_FILE = 20  # a missing, corrupt or foreign model file
    EXPORT = 21  # an export that failed its checks
    # 30-39 chain
    CHAIN_UNREACHABLE = 30  # the RPC endpoint did not answer (not fatal: it may come back)
    CHAIN_REVERT = 31  # the contract refused the transaction (fatal as given)
    CHAIN_NO_CONTRACT = 32  # no SwarmLedger at the address given (fatal)
    CHAIN_NO_FUNDS = 33  # the signing account cannot pay for gas (fatal until funded)
    KEY_FILE = 35  # a missing, unreadable or over-permissive key file (fatal)
    # 40-49 p2p
    P2P_LISTEN = 40  # the libp2p listen address cannot be bound (not fatal: it may free up)
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    INTERNAL = 70  # a bug: please report it


FATAL = frozenset(c for c in ExitCode if 10 <= c < 30) | {ExitCode.CHAIN_REVERT,
                                                         ExitCode.CHAIN_NO_CONTRACT,
                                                         ExitCode.CHAIN_NO_FUNDS,
                                                         ExitCode.KEY_FILE}


def exit_code_for(error: BaseException) -> ExitCode | None:
    """The exit code for a known error type, or None for anything unexpected.

    Errors of packages above the agent (the simulator) name their own code in an
    ``exit_code`` class attribute; the agent does not import them.
    """
    from agent.camera.source import CameraError, CorruptImageError
    from agent.camera.yolo import LabelError
    from agent.commands.args import OutputPathError, UsageError
    from agent.config.schema import ConfigError
    from chain.errors import (
        KeyFileError,
        LedgerError,
        LedgerRevert,
        NoContractError,
        NoFundsError,
    )
    from models.errors import CheckpointError, ExportError, ModelFileError

    own = getattr(error, "exit_code", None)
    if isinstance(own, ExitCode):
        return own
    table: list[tuple[type[BaseException], ExitCode]] = [
        (UsageError, ExitCode.USAGE),
        (ConfigError, ExitCode.CONFIG),
        (OutputPathError, ExitCode.OUTPUT),
        (CorruptImageError, ExitCode.BAD_INPUT_FILE),
        (LabelError, ExitCode.BAD_INPUT_FILE),
        (CameraError, ExitCode.CAMERA),
        (CheckpointError, ExitCode.MODEL_FILE),
        (ModelFileError, ExitCode.MODEL_FILE),
        (ExportError, ExitCode.EXPORT),
        (NoContractError, ExitCode.CHAIN_NO_CONTRACT),
        (NoFundsError, ExitCode.CHAIN_NO_FUNDS),
        (LedgerRevert, ExitCode.CHAIN_REVERT),
        (LedgerError, ExitCode.CHAIN_UNREACHABLE),
        (KeyFileError, ExitCode.KEY_FILE),
    ]
    for kind, code in table:
        if isinstance(error, kind):
            return code
    return None
