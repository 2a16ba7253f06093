"""Exit codes, banded by component, and which errors map to them.

systemd restarts a daemon that exits with a non-fatal code; a fatal one (bad config, bad
model file, unknown town) will fail again the same way, so the unit's
``RestartPreventExitStatus=`` lists the fatal band.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2  # argparse: unknown flag or missing argument
    # 10-19 input and configuration (fatal: the same input fails again)
    BAD_VALUE = 10  # an unknown town, weather or other bad argument value
    CAMERA = 11  # a camera, video or image folder that cannot be opened
    BAD_INPUT_FILE = 12  # a corrupt image or label file passed by name
    # 20-29 models (fatal)
    MODEL_FILE = 20  # a missing, corrupt or foreign model file
    EXPORT = 21  # an export that failed its checks
    # 30-39 chain
    CHAIN_UNREACHABLE = 30  # the RPC endpoint did not answer (not fatal: it may come back)
    CHAIN_REVERT = 31  # the contract refused the transaction (fatal as given)
    KEY_FILE = 35  # a missing, unreadable or over-permissive key file (fatal)
    # 40-49 p2p: reserved
    INTERNAL = 70  # a bug: please report it


FATAL = frozenset(c for c in ExitCode if 10 <= c < 30) | {ExitCode.CHAIN_REVERT,
                                                         ExitCode.KEY_FILE}


def exit_code_for(error: BaseException) -> ExitCode | None:
    """The exit code for a known error type, or None for anything unexpected."""
    from agent.camera.source import CameraError, CorruptImageError
    from agent.camera.yolo import LabelError
    from agent.commands.args import UsageError
    from chain.keys import KeyFileError
    from chain.launch import ChainLaunchError
    from chain.ledger import LedgerError, LedgerRevert
    from models.checkpoint import CheckpointError
    from models.onnx_export import ExportError
    from models.runtime import ModelFileError
    from sim.world import UnknownTownError, UnknownWeatherError

    table: list[tuple[type[BaseException], ExitCode]] = [
        (UsageError, ExitCode.USAGE),
        (CorruptImageError, ExitCode.BAD_INPUT_FILE),
        (LabelError, ExitCode.BAD_INPUT_FILE),
        (CameraError, ExitCode.CAMERA),
        (UnknownTownError, ExitCode.BAD_VALUE),
        (UnknownWeatherError, ExitCode.BAD_VALUE),
        (CheckpointError, ExitCode.MODEL_FILE),
        (ModelFileError, ExitCode.MODEL_FILE),
        (ExportError, ExitCode.EXPORT),
        (LedgerRevert, ExitCode.CHAIN_REVERT),
        (LedgerError, ExitCode.CHAIN_UNREACHABLE),
        (ChainLaunchError, ExitCode.CHAIN_UNREACHABLE),
        (KeyFileError, ExitCode.KEY_FILE),
    ]
    for kind, code in table:
        if isinstance(error, kind):
            return code
    return None
