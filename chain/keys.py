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

from chain.errors import KeyFileError
from models.atomic import atomic_write_bytes

PASSWORD_ENV = "SWARMDRIVE_KEY_PASSWORD"
MAX_KEY_FILE_BYTES = 64 << 10


def load_key(path: Path, password: str | None = None) -> LocalAccount:
    """The account in ``path``; raises ``KeyFileError`` naming the file and the problem."""
    _check_link(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path}: no such file") from None
    except OSError as e:
        raise KeyFileError(f"key file {path}: cannot look at it ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise KeyFileError(f"key file {path}: is a directory, not a key file")
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path}: not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets others "
                           "read it; chmod 600 it")
    if st.st_uid != os.geteuid():
        raise KeyFileError(f"key file {path}: owned by uid {st.st_uid}, not by this user "
                           f"({os.geteuid()}); a key must belong to the one who uses it")
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path}: too large to be a key")
    try:
        text = path.read_text(errors="replace").strip()
    except OSError as e:
        raise KeyFileError(f"key file {path}: cannot read it ({e.strerror})") from None
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


def _check_link(path: Path) -> None:
    """A symlink to a key is accepted only from its own user: someone else could repoint it."""
    try:
        st = path.lstat()
    except OSError:
        return  # stat() below names the problem
    if stat.S_ISLNK(st.st_mode) and st.st_uid not in (os.geteuid(), 0):
        raise KeyFileError(f"key file {path}: a symlink owned by uid {st.st_uid}, who could "
                           "point it at another key; use the file itself")


def new_key_file(path: Path, password: str | None = None) -> LocalAccount:
    """Create a key at ``path`` (mode 0600), encrypted when ``password`` is given."""
    if path.exists() or path.is_symlink():
        raise KeyFileError(f"key file {path}: already exists; refusing to overwrite a key")
    if not path.parent.is_dir():
        raise KeyFileError(f"key file {path}: folder {path.parent} does not exist; create it "
                           "(mode 0700) first")
    account: LocalAccount = Account.create()
    if password:
        data = json.dumps(Account.encrypt(account.key, password)).encode()
    else:
        data = account.key.hex().encode()
    atomic_write_bytes(path, data, mode=0o600)
    return account
