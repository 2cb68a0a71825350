"""The accounts of the consumer and utility roles, resolved without ever prompting on a terminal.

A private key or an unlocked dev-chain account signs directly (the package's
``resolve_signer``); a keystore without a configured password is unlocked from a password
field on the page and kept in memory only. Signers are cached per session, so each role's
nonce counter is shared by every request the server handles.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from web3 import Web3

from demand_response.accounts import AccountError, keystore_path, load_keystore, resolve_signer
from demand_response.chain import Signer
from demand_response.config import DEV_CHAIN_IDS

from .chain import ChainLink
from .config import AppConfig
from .errors import NeedsPassword


class Signers:
    """The roles' addresses and signers of one app."""

    def __init__(self, config: AppConfig, chain: ChainLink) -> None:
        self.config = config
        self.chain = chain
        self._lock = threading.RLock()
        self._signers: dict[str, Signer] = {}
        self._unlocked: dict[str, Any] = {}  # role -> LocalAccount (password-unlocked keystores)
        chain.on_drop.append(self._signers.clear)

    def _key(self, role: str) -> str | None:
        return self.config.environ.get(f"{role.upper()}_PRIVATE_KEY") or None

    def _keystore(self, role: str) -> str | None:
        return self.config.settings.get(f"{role.upper()}_ACCOUNT")

    def _index(self, role: str) -> int:
        return self.config.number(f"DR_{role.upper()}_INDEX")

    def needs_password(self, role: str) -> bool:
        """True when the role uses a keystore whose password is neither configured nor entered."""
        if self._key(role) or role in self._unlocked:
            return False
        return bool(self._keystore(role)) and self.config.settings.get(f"{role.upper()}_ACCOUNT_PASS") is None

    def address(self, role: str) -> str | None:
        """The role's address, without unlocking anything; None when it cannot be known."""
        try:
            key = self._key(role)
            if key:
                from eth_account import Account

                return Account.from_key(key).address
            if role in self._unlocked:
                return self._unlocked[role].address
            name = self._keystore(role)
            if name:
                data = json.loads(keystore_path(name, self.config.settings).read_text(encoding="utf-8"))
                return Web3.to_checksum_address(data["address"])
            session = self.chain.session()
            if session.chain_id in DEV_CHAIN_IDS:
                accounts = session.w3.eth.accounts
                index = self._index(role)
                return accounts[index] if index < len(accounts) else None
        except Exception:  # no address is an answer the pages show ("no account")
            return None
        return None

    def unlock(self, role: str, password: str) -> str:
        """Decrypt the role's keystore with ``password`` (kept in memory only); returns the address."""
        name = self._keystore(role)
        if not name:
            raise AccountError(f"no {role.upper()}_ACCOUNT keystore is configured; nothing to unlock")
        account = load_keystore(name, password, self.config.settings)
        with self._lock:
            self._unlocked[role] = account
            self._signers.pop(role, None)
        return account.address

    def signer(self, role: str) -> Signer:
        """The role's signer (cached per session, so its nonce counter is shared)."""
        session = self.chain.session()
        settings = self.config.settings
        with self._lock:
            cached = self._signers.get(role)
            if cached is not None and cached.w3 is session.w3:
                return cached
            if role in self._unlocked:
                signer = Signer(session.w3, self._unlocked[role], label=f"{role} {self._keystore(role)}",
                                receipt_timeout=settings.receipt_timeout)
            else:
                name = self._keystore(role)
                if not self._key(role) and name and self.needs_password(role):
                    raise NeedsPassword(role, name)
                signer = resolve_signer(session.w3, role, settings, account_index=self._index(role),
                                        environ=self.config.environ)
            self._signers[role] = signer
            return signer

    def utility(self) -> Signer:
        """The utility signer, checked against the contract's utility address."""
        signer = self.signer("utility")
        owner = self.chain.session().dr.utility()
        if owner.lower() != signer.address.lower():
            raise AccountError(
                f"the configured utility account {signer.address} is not this contract's utility ({owner}); "
                "fix UTILITY_ACCOUNT or CONTRACT_ADDRESS"
            )
        return signer
