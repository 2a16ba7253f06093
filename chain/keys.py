"""Vehicle and operator keys: one secp256k1 key per vehicle, in a file only its owner can read.

Two formats: an Ethereum keystore (encrypted JSON, password from a file or
``SWARMDRIVE_KEY_PASSWORD``) or a bare hex private key. Either way the file must have mode 0600:
a key that others can read is refused, not used.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from models.atomic import atomic_write_bytes

PASSWORD_ENV = "SWARMDRIVE_KEY_PASSWORD"
MAX_KEY_FILE_BYTES = 64 << 10


class KeyFileError(Exception):
    """A key file that is missing, readable by others, or not a key."""


def load_key(path: Path, password: str | None = None) -> LocalAccount:
    """The account in ``path``; raises ``KeyFileError`` naming the file and the problem."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path}: no such file") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets others "
                           "read it; chmod 600 it")
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path}: too large to be a key")
    text = path.read_text(errors="replace").strip()
    try:
        if text.startswith("{"):
            secret = password if password is not None else os.environ.get(PASSWORD_ENV)
            if secret is None:
                raise KeyFileError(f"key file {path}: encrypted keystore needs a password "
                                   f"(--password-file or {PASSWORD_ENV})")
            account: LocalAccount = Account.from_key(Account.decrypt(json.loads(text), secret))
        else:
            account = Account.from_key(text)
    except KeyFileError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise KeyFileError(f"key file {path}: not a private key or keystore, or wrong password "
                           f"({type(e).__name__})") from None
    return account


def new_key_file(path: Path, password: str | None = None) -> LocalAccount:
    """Create a key at ``path`` (mode 0600), encrypted when ``password`` is given."""
    if path.exists():
        raise KeyFileError(f"key file {path}: already exists; refusing to overwrite a key")
    account: LocalAccount = Account.create()
    if password:
        data = json.dumps(Account.encrypt(account.key, password)).encode()
    else:
        data = account.key.hex().encode()
    atomic_write_bytes(path, data, mode=0o600)
    return account
