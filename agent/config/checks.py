"""What a config needs of the machine, checked before a daemon does any work.

Each check returns problems as ``key.path: what is wrong`` lines. Each daemon checks what it
uses: the inference service its state folder and socket (a bad key must not stop serving the
perception stack); the learner also its key, the chain and the telemetry files.
``swarmdrive config check`` runs them all. Standard library only, but for the key's decoding.
"""

from __future__ import annotations

import json
import logging
import stat
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from agent.config.schema import ConfigError, VehicleConfig

log = logging.getLogger(__name__)

MAX_RPC_ANSWER = 1 << 16


def writable_dir(path: Path, key: str) -> list[str]:
    """``path`` exists (or can be made) and this user can create files in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as e:
        return [f"{key}: {path} is not a folder this user can write ({e.strerror or e})"]
    return []


def key_file(cfg: VehicleConfig) -> list[str]:
    """The vehicle key loads: it exists, only its owner can read it, and it is a key."""
    from chain.errors import KeyFileError
    from chain.keys import load_key

    v = cfg.vehicle
    try:
        password = None if v.key_password_file is None else v.key_password_file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        return [f"vehicle.key_password_file: cannot read {v.key_password_file} ({e})"]
    try:
        load_key(v.key_file, None if password is None else password.strip())
    except KeyFileError as e:
        return [f"vehicle.key_file: {e}"]
    return []


def secret_files(cfg: VehicleConfig) -> list[str]:
    """Telemetry's CA and credential files exist; credentials are not readable by others."""
    t = cfg.telemetry
    if t is None:
        return []
    problems = []
    for name, path, secret in (("ca_file", t.ca_file, False),
                               ("username_file", t.username_file, True),
                               ("password_file", t.password_file, True)):
        if path is None:
            continue
        try:
            st = path.stat()
            with path.open("rb"):
                pass
        except OSError as e:
            problems.append(f"telemetry.{name}: cannot read {path} ({e.strerror})")
            continue
        if secret and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(f"telemetry.{name}: {path} has mode "
                            f"{stat.S_IMODE(st.st_mode):04o}; chmod 600 it")
    if (t.username_file is None) != (t.password_file is None):
        problems.append("telemetry: username_file and password_file go together")
    return problems


def chain_reachable(cfg: VehicleConfig, timeout_s: float = 5.0,
                    wait_s: float = 0.0) -> list[str]:
    """The RPC endpoint answers (within ``wait_s``, asking again with backoff), and there is
    code at the contract address."""
    c = cfg.chain
    deadline, delay = time.monotonic() + wait_s, 1.0
    while True:
        try:
            code = _rpc(c.rpc_url, "eth_getCode", [c.contract, "latest"], timeout_s)
            break
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            left = deadline - time.monotonic()
            if left <= 0:
                return [f"chain.rpc_url: {c.rpc_url} does not answer ({reason})"]
            pause = min(delay, left)  # the last try at the deadline
            log.warning("chain_unreachable url=%s error=%s retry_in=%.1fs", c.rpc_url, reason,
                        pause)
            time.sleep(pause)
            delay = min(delay * 2, 15.0)
    if code in ("0x", "0x0", None):
        return [f"chain.contract: no contract at {c.contract} on {c.rpc_url}"]
    return []


def _rpc(url: str, method: str, params: list[object], timeout_s: float) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as r:  # the schema allows http(s) only
        answer = json.loads(r.read(MAX_RPC_ANSWER))
    if not isinstance(answer, dict) or "result" not in answer:
        raise ValueError(f"not a JSON-RPC answer to {method}")
    return answer["result"]


def for_serve(cfg: VehicleConfig) -> list[str]:
    return (writable_dir(cfg.vehicle.state_dir, "vehicle.state_dir")
            + writable_dir(cfg.serve.socket.parent, "serve.socket"))


def for_learn(cfg: VehicleConfig, probe: bool = True, wait_s: float = 0.0) -> list[str]:
    problems = (writable_dir(cfg.vehicle.state_dir, "vehicle.state_dir") + key_file(cfg)
                + secret_files(cfg))
    if not probe:
        return problems
    # No waiting on the chain for a config that is wrong anyway.
    return problems + chain_reachable(cfg, wait_s=0.0 if problems else wait_s)


def for_all(cfg: VehicleConfig, probe: bool = True, wait_s: float = 0.0) -> list[str]:
    """What both daemons need, each problem once; ``wait_s`` for an RPC node that is away."""
    serve = for_serve(cfg)
    return list(dict.fromkeys(serve + for_learn(cfg, probe, 0.0 if serve else wait_s)))


def require(cfg: VehicleConfig, path: Path, problems: list[str]) -> VehicleConfig:
    """``cfg``, or ``ConfigError`` with every problem."""
    if problems:
        raise ConfigError(path, problems)
    return cfg

