"""Accounts: brownie-compatible V3 keystores, and choosing the signer of each role.

Keystores live in ``~/.brownie/accounts/NAME.json`` (brownie's folder, so ``brownie
accounts new NAME`` and ``dr accounts new NAME`` make the same files), or ``KEYSTORE_DIR``.
A plain path to a keystore file works everywhere a name does. Files are written with
mode 600. Passwords are never printed or logged.

Which account signs for a role (``utility`` or ``consumer``), first match wins:

1. ``{ROLE}_PRIVATE_KEY`` in the environment (used by the demo for its dev accounts; never
   put keys on the command line, where ``ps`` shows them);
2. ``{ROLE}_ACCOUNT`` (keystore name or path) unlocked with ``{ROLE}_ACCOUNT_PASS``, or a
   password prompt when that is unset and a terminal is attached;
3. on a local development chain only (chain id 1337 or 31337): the node's unlocked
   account number ``account_index`` (utility 0, consumer 1 by default).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from .chain import Signer
from .errors import AccountError, ChainError
from .files import atomic_write_text
from .config import DEV_CHAIN_IDS, Settings


def keystore_dir(settings: Settings | None = None) -> Path:
    """Where named keystores live: ``KEYSTORE_DIR`` or ``~/.brownie/accounts``."""
    configured = (settings.get("KEYSTORE_DIR") if settings else None) or os.environ.get("KEYSTORE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".brownie" / "accounts"


def keystore_path(name_or_path: str, settings: Settings | None = None) -> Path:
    """The keystore file for a brownie account name or a path."""
    if any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.endswith(".json"):
        path = Path(name_or_path).expanduser()
        if path.exists() or path.suffix == ".json":
            return path
        return path.with_suffix(".json")
    return keystore_dir(settings) / f"{name_or_path}.json"


def save_keystore(
    name_or_path: str, private_key: str, password: str, *, settings: Settings | None = None,
    overwrite: bool = False, kdf_iterations: int | None = None,
) -> tuple[Path, str]:
    """Encrypt ``private_key`` into a V3 keystore (mode 600); returns (path, address)."""
    path = keystore_path(name_or_path, settings)
    if path.exists() and not overwrite:
        raise AccountError(f"keystore {path} already exists; pick another name or remove it first")
    try:
        account = Account.from_key(private_key)
    except Exception:
        raise AccountError("that is not a valid private key (expected 32 bytes of hex)") from None
    kwargs: dict[str, Any] = {}
    if kdf_iterations:
        kwargs = {"kdf": "pbkdf2", "iterations": kdf_iterations}
    encrypted = Account.encrypt(account.key, password, **kwargs)
    encrypted["address"] = encrypted["address"].lower()  # as brownie writes it
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, json.dumps(encrypted), mode=0o600)
    return path, account.address


def new_keystore(name_or_path: str, password: str, **kwargs: Any) -> tuple[Path, str]:
    """Create a fresh random account in a keystore; returns (path, address)."""
    return save_keystore(name_or_path, Account.create().key.hex(), password, **kwargs)


def list_keystores(settings: Settings | None = None) -> list[tuple[str, str]]:
    """(name, address) of every keystore in the keystore folder."""
    folder = keystore_dir(settings)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            address = json.loads(path.read_text(encoding="utf-8")).get("address", "")
            out.append((path.stem, Web3.to_checksum_address(address) if address else "?"))
        except (OSError, ValueError):
            out.append((path.stem, "(unreadable)"))
    return out


def load_keystore(name_or_path: str, password: str, settings: Settings | None = None) -> LocalAccount:
    """Decrypt a keystore. Raises ``AccountError`` (one line, no password in it)."""
    path = keystore_path(name_or_path, settings)
    if not path.is_file():
        raise AccountError(
            f"no keystore {path}; create it with `dr accounts new {name_or_path}` or "
            f"`dr accounts import {name_or_path}`, or fix the account name"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise AccountError(f"keystore {path} is not a JSON V3 keystore") from None
    try:
        key = Account.decrypt(data, password)
    except ValueError:
        raise AccountError(f"wrong password for keystore {path}; check the *_ACCOUNT_PASS setting") from None
    except Exception:
        raise AccountError(f"keystore {path} is not a valid V3 keystore") from None
    return Account.from_key(key)


def resolve_signer(
    w3: Web3, role: str, settings: Settings, *, account_index: int | None = None,
    environ: dict[str, str] | None = None,
) -> Signer:
    """The signer for ``role`` ('utility' or 'consumer'); see the module docstring for the order."""
    environ = dict(os.environ) if environ is None else environ
    prefix = role.upper()
    kwargs: dict[str, Any] = {"receipt_timeout": settings.receipt_timeout}
    if int(w3.eth.chain_id) in DEV_CHAIN_IDS:
        # ganache's instamine occasionally leaves a receipt unseen by web3's wait loop
        # under concurrent load; re-check every 2 s instead of 30 on dev chains.
        kwargs["stuck_after"] = 2.0
    key = environ.get(f"{prefix}_PRIVATE_KEY")
    if key:
        try:
            account = Account.from_key(key)
        except Exception:
            raise AccountError(f"{prefix}_PRIVATE_KEY is not a valid private key") from None
        return Signer(w3, account, label=f"{role} {account.address[:10]}", **kwargs)
    name = settings.get(f"{prefix}_ACCOUNT")
    if name:
        password = settings.get(f"{prefix}_ACCOUNT_PASS")
        if password is None:
            if not sys.stdin.isatty():
                raise AccountError(f"{prefix}_ACCOUNT_PASS is not set and there is no terminal to ask for it")
            password = getpass.getpass(f"Password for {role} account {name}: ")
        account = load_keystore(name, password, settings)
        return Signer(w3, account, label=f"{role} {name}", **kwargs)
    chain_id = w3.eth.chain_id
    if chain_id not in DEV_CHAIN_IDS:
        raise AccountError(
            f"no {role} account configured for chain {chain_id}; set {prefix}_ACCOUNT and "
            f"{prefix}_ACCOUNT_PASS in .env (see `dr accounts new`)"
        )
    index = (0 if role == "utility" else 1) if account_index is None else account_index
    accounts = w3.eth.accounts
    if index >= len(accounts):
        raise AccountError(f"the dev chain has {len(accounts)} unlocked accounts; account {index} does not exist")
    return Signer(w3, accounts[index], label=f"{role} #{index}", **kwargs)
