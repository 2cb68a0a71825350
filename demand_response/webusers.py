"""The web app's accounts: users, roles, sessions, API tokens and failed sign-ins, in SQLite.

One file (``WEB_USERS_DB``, default ``STATE_DIR/web-users.sqlite3``, mode 600) shared by
every gunicorn worker and by ``dr web user …``; SQLite's locking makes each write atomic.

* Passwords: ``hashlib.scrypt`` (n=2**15, r=8, p=1, 16-byte random salt, 32-byte key),
  stored as ``scrypt$32768$8$1$<salt hex>$<key hex>``, compared in constant time.
* Sessions: a random id (the browser holds it in the signed session cookie), stored as its
  SHA-256; it ends at its expiry, at sign-out, when the password changes and when the user
  is removed.
* API tokens: ``drt_`` + 32 random bytes, shown once, stored as their SHA-256, revocable.
* Failed sign-ins: recorded per account and per client address; ``LoginPolicy`` says when
  either is locked out.

Roles: ``household`` (bound to one Ethereum address: its own console only), ``operator``
(the utility's dashboard and actions) and ``viewer`` (reads everything, changes nothing).
Only the standard library: ``dr web`` works without the web extra.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError

ROLES = ("household", "operator", "viewer")
DEFAULT_DB_NAME = "web-users.sqlite3"
TOKEN_PREFIX = "drt_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
#: scrypt's cost: 32 MiB and ~0.1 s per hash on a laptop core (OWASP's minimum is n=2**17 with
#: r=8 for 128 MiB; 2**15 keeps a 1 GiB board answering several sign-ins at once).
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**15, 8, 1, 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    role        TEXT NOT NULL CHECK (role IN ('household', 'operator', 'viewer')),
    address     TEXT,
    password    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    client      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    last_used   INTEGER
);
CREATE TABLE IF NOT EXISTS failures (
    kind        TEXT NOT NULL CHECK (kind IN ('account', 'client')),
    key         TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_key ON failures (kind, key, at);
"""


@dataclass(frozen=True)
class User:
    """A web user (never its password hash)."""

    id: int
    name: str
    role: str
    address: str | None
    created_at: int
    changed_at: int


@dataclass(frozen=True)
class Token:
    """An API token's record (the token itself is shown once, when it is made)."""

    id: int
    user: str
    label: str
    created_at: int
    last_used: int | None


@dataclass(frozen=True)
class LoginPolicy:
    """How many failed sign-ins lock an account or a client address out, and for how long."""

    max_account_failures: int = 5
    max_client_failures: int = 20
    lockout_s: int = 900
    session_s: int = 8 * 3600

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "LoginPolicy":
        """From the ``WEB_*`` options (whole numbers; minutes for durations)."""
        return cls(int(options["WEB_LOGIN_MAX_FAILURES"]), int(options["WEB_LOGIN_MAX_CLIENT_FAILURES"]),
                   int(options["WEB_LOGIN_LOCKOUT_MINUTES"]) * 60, int(options["WEB_SESSION_MINUTES"]) * 60)


class LoginRefused(UserError):
    """A sign-in that failed: wrong name or password, or a lockout (``retry_after`` seconds)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def users_db_path(settings: Any, environ: Mapping[str, str] | None = None) -> Path:
    """``WEB_USERS_DB`` (the environment, then ``.env``), else ``STATE_DIR/web-users.sqlite3``."""
    environ = os.environ if environ is None else environ
    path = environ.get("WEB_USERS_DB") or settings.get("WEB_USERS_DB")
    return Path(path) if path else Path(settings.state_dir) / DEFAULT_DB_NAME


# -- passwords and tokens ---------------------------------------------------------------------


def hash_password(password: str) -> str:
    """The scrypt hash of ``password`` with a fresh salt, as one string."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def check_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(key)
        actual = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def check_new_password(password: str) -> None:
    """Refuse a password that is too short or too long (one line)."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password is too long: at most {MAX_PASSWORD} characters")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=256 * r * (n + p + 2))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


#: Checked against when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * SCRYPT_LEN}"


# -- the store --------------------------------------------------------------------------------


class UserStore:
    """Users, sessions, tokens and failed sign-ins in one SQLite file; safe across threads and
    processes. ``create=False`` refuses a missing file (the web app never creates it)."""

    def __init__(self, path: Path | str, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(f"no web users yet ({self.path} does not exist): create the first with "
                            "`dr web user add NAME --role operator`")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open the web users database {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, *statements: tuple[str, tuple]) -> int:
        """Run ``statements`` in one transaction; the row count of the last."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                count = 0
                for sql, args in statements:
                    count = self._db.execute(sql, args).rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return count

    # -- users ----------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, address: str | None = None) -> User:
        """A new user. A household needs its Ethereum address; other roles have none."""
        if not _NAME.match(name):
            raise UserError(f"{name!r} is not a user name: letters, digits and . _ @ - (up to 64)")
        if role not in ROLES:
            raise UserError(f"{role!r} is not a role: household, operator or viewer")
        if role == "household":
            if not address or not _ADDRESS.match(address):
                raise UserError("a household user needs its Ethereum address: --address 0x… (40 hex digits)")
            address = address.lower()
        elif address:
            raise UserError(f"only a household user is bound to an address, not a {role}")
        check_new_password(password)
        now = int(time.time())
        try:
            self._write(("INSERT INTO users (name, role, address, password, created_at, changed_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (name, role, address, hash_password(password), now, now)))
        except sqlite3.IntegrityError:
            raise UserError(f"a user named {name!r} exists already") from None
        return self.get(name)  # type: ignore[return-value]

    def get(self, name: str) -> User | None:
        """The user called ``name`` (any case), or None."""
        rows = self._rows("SELECT * FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def users(self) -> list[User]:
        """Every user, by name."""
        return [_user(row) for row in self._rows("SELECT * FROM users ORDER BY name")]

    def need(self, name: str) -> User:
        """The user called ``name``, or a one-line error."""
        user = self.get(name)
        if user is None:
            raise UserError(f"there is no user {name!r} (`dr web user list` lists them)")
        return user

    def remove(self, name: str) -> None:
        """Remove a user with its sessions and tokens."""
        user = self.need(name)
        self._write(("DELETE FROM users WHERE id = ?", (user.id,)))

    def set_password(self, name: str, password: str) -> None:
        """Change a password; every session of the user ends (tokens stay until revoked)."""
        check_new_password(password)
        user = self.need(name)
        self._write(("UPDATE users SET password = ?, changed_at = ? WHERE id = ?",
                     (hash_password(password), int(time.time()), user.id)),
                    ("DELETE FROM sessions WHERE user_id = ?", (user.id,)))

    # -- signing in -----------------------------------------------------------------------

    def authenticate(self, name: str, password: str, client: str, policy: LoginPolicy) -> User:
        """The user when ``name`` and ``password`` match and neither the account nor the client
        is locked out; otherwise ``LoginRefused`` (and the failure is recorded)."""
        now = int(time.time())
        name = name.strip()[:64]
        for kind, key, limit in (("client", client, policy.max_client_failures),
                                 ("account", name.lower(), policy.max_account_failures)):
            wait = self._locked_for(kind, key, limit, policy.lockout_s, now)
            if wait:
                minutes = max(1, -(-wait // 60))
                what = "this account" if kind == "account" else "this address"
                raise LoginRefused(f"too many failed sign-ins for {what}: try again in {minutes} min", wait)
        rows = self._rows("SELECT * FROM users WHERE name = ?", (name,))
        stored = rows[0]["password"] if rows else _DUMMY
        if not check_password(stored, password) or not rows:
            self._write(("INSERT INTO failures VALUES ('client', ?, ?)", (client, now)),
                        ("INSERT INTO failures VALUES ('account', ?, ?)", (name.lower(), now)),
                        ("DELETE FROM failures WHERE at < ?", (now - 7 * 86400,)))
            raise LoginRefused("wrong user name or password")
        self._write(("DELETE FROM failures WHERE kind = 'account' AND key = ?", (name.lower(),)))
        return _user(rows[0])

    def _locked_for(self, kind: str, key: str, limit: int, window: int, now: int) -> int:
        """Seconds until ``key`` may try again (0: not locked)."""
        if limit <= 0:
            return 0
        rows = self._rows("SELECT at FROM failures WHERE kind = ? AND key = ? AND at > ? ORDER BY at DESC "
                          "LIMIT 1 OFFSET ?", (kind, key, now - window, limit - 1))
        return max(0, rows[0]["at"] + window - now) if rows else 0

    def failures(self, name: str, window: int) -> int:
        """Failed sign-ins of account ``name`` in the last ``window`` seconds."""
        rows = self._rows("SELECT COUNT(*) AS n FROM failures WHERE kind = 'account' AND key = ? AND at > ?",
                          (name.lower(), int(time.time()) - window))
        return int(rows[0]["n"])

    def unlock(self, name: str) -> int:
        """Forget the failed sign-ins of account ``name``; how many there were."""
        return self._write(("DELETE FROM failures WHERE kind = 'account' AND key = ?", (name.lower(),)))

    # -- sessions -------------------------------------------------------------------------

    def open_session(self, user: User, lifetime_s: int, client: str) -> str:
        """A new session id for ``user`` (kept by the browser; the store keeps its hash)."""
        sid, now = secrets.token_urlsafe(32), int(time.time())
        self._write(("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (_digest(sid), user.id, now, now + lifetime_s,
                                                                      client[:64])),
                    ("DELETE FROM sessions WHERE expires_at < ?", (now,)))
        return sid

    def session_user(self, sid: str) -> User | None:
        """The user of a live session, or None (unknown, ended or expired)."""
        rows = self._rows("SELECT users.* FROM sessions JOIN users ON users.id = sessions.user_id "
                          "WHERE sessions.id_hash = ? AND sessions.expires_at > ?", (_digest(sid), int(time.time())))
        return _user(rows[0]) if rows else None

    def close_session(self, sid: str) -> None:
        """End a session (sign-out)."""
        self._write(("DELETE FROM sessions WHERE id_hash = ?", (_digest(sid),)))

    def sessions(self, name: str) -> int:
        """How many live sessions ``name`` has."""
        user = self.need(name)
        rows = self._rows("SELECT COUNT(*) AS n FROM sessions WHERE user_id = ? AND expires_at > ?",
                          (user.id, int(time.time())))
        return int(rows[0]["n"])

    # -- API tokens -----------------------------------------------------------------------

    def new_token(self, name: str, label: str = "api") -> tuple[Token, str]:
        """A new API token of user ``name``: its record and the token (shown once)."""
        user = self.need(name)
        secret, now = TOKEN_PREFIX + secrets.token_urlsafe(32), int(time.time())
        self._write(("INSERT INTO tokens (user_id, label, token_hash, created_at) VALUES (?, ?, ?, ?)",
                     (user.id, label[:64] or "api", _digest(secret), now)))
        token = [t for t in self.tokens(name) if t.created_at == now and t.label == (label[:64] or "api")][-1]
        return token, secret

    def tokens(self, name: str | None = None) -> list[Token]:
        """The tokens of ``name`` (every user's when None)."""
        sql = ("SELECT tokens.*, users.name AS user FROM tokens JOIN users ON users.id = tokens.user_id"
               + (" WHERE users.name = ?" if name else "") + " ORDER BY tokens.id")
        return [Token(row["id"], row["user"], row["label"], row["created_at"], row["last_used"])
                for row in self._rows(sql, (name,) if name else ())]

    def revoke_token(self, name: str, token_id: int | None = None) -> int:
        """Revoke one token of ``name`` (by id) or all of them (None); how many."""
        user = self.need(name)
        if token_id is None:
            return self._write(("DELETE FROM tokens WHERE user_id = ?", (user.id,)))
        count = self._write(("DELETE FROM tokens WHERE user_id = ? AND id = ?", (user.id, token_id)))
        if not count:
            raise UserError(f"{name!r} has no token {token_id} (`dr web user token {name} --list`)")
        return count

    def token_user(self, secret: str) -> User | None:
        """The user of a valid API token, or None."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        rows = self._rows("SELECT users.*, tokens.id AS token_id, tokens.last_used FROM tokens JOIN users "
                          "ON users.id = tokens.user_id WHERE tokens.token_hash = ?", (_digest(secret),))
        if not rows:
            return None
        now = int(time.time())
        if (rows[0]["last_used"] or 0) < now - 60:  # at most one write a minute per token
            self._write(("UPDATE tokens SET last_used = ? WHERE id = ?", (now, rows[0]["token_id"])))
        return _user(rows[0])


def _user(row: sqlite3.Row) -> User:
    return User(row["id"], row["name"], row["role"], row["address"], row["created_at"], row["changed_at"])

