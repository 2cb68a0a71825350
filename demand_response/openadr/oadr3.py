"""OpenADR 3.0 objects for the web app's REST API: a SQLite store, client credentials, schema checks.

The Flask blueprint ``flaskapp/openadr3.py`` serves these; the utility publishes into them
(``publish_programme``, ``publish_notice``, ``publish_dispatch``, ``cancel_request``).

* clients: OAuth2 client credentials (``add_client``), a role each: ``bl`` (business logic:
  the utility; writes programs and events) or ``ven`` (a consumer, bound to one Ethereum
  address; writes its VEN object and its reports). Secrets and tokens are stored hashed.
* objects: programs, events, reports and VENs as the JSON the 3.0.1 schema defines; every
  object in and out is checked against the vendored schema (``schema/openadr3-3.0.1.yaml``).
* one programme per contract: ``programName`` is ``dr://<chainId>/<contract>``, each event's
  ``eventName`` is the request's market context ``dr://<chainId>/<contract>/<requestId>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from ._sqlite import SqliteStore
from .context import MarketContext

SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "openadr3-3.0.1.yaml"
TOKEN_LIFETIME = 3600
ROLES = ("bl", "ven")
#: Scopes a role may be granted (OpenADR 3.0.1 securitySchemes); unknown requested scopes are refused.
SCOPES = {
    "bl": {"read_all", "write_programs", "write_events", "write_subscriptions", "write_vens"},
    "ven": {"read_all", "write_reports", "write_subscriptions", "write_vens"},
}
KINDS = ("PROGRAM", "EVENT", "REPORT", "VEN")
NOTICE_PAYLOAD = "x-DR-REQUEST"  # the advance notice: target reduction in kW
DISPATCH_PAYLOAD = "DISPATCH_SETPOINT_RELATIVE"  # a winner's award: -accepted kW
USAGE_PAYLOAD = "USAGE"  # telemetry reports: real power in kW (DIRECT_READ)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role        TEXT NOT NULL,
    address     TEXT,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    program_id TEXT,
    owner      TEXT,
    name       TEXT,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_kind ON objects (kind, program_id);
"""


class Oadr3Error(UserError, ValueError):
    """A request the 3.0 API refuses: ``status`` is the HTTP code, the message one line."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Client:
    """An OAuth2 client: its role, its granted scopes and (for a VEN) its address."""

    client_id: str
    role: str
    address: str | None
    scopes: frozenset[str] = frozenset()


# -- schema ---------------------------------------------------------------------------------


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema 2020-12: ``nullable`` and boolean exclusive bounds."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in ("example", "discriminator", "nullable")}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    for bound, limit in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
        if isinstance(out.get(bound), bool):
            flag = out.pop(bound)
            if flag and limit in out:
                out[bound] = out.pop(limit)
    return out


@lru_cache(maxsize=None)
def _components() -> dict[str, Any]:
    import yaml

    with SCHEMA_FILE.open(encoding="utf-8") as handle:
        return _to_json_schema(yaml.safe_load(handle)["components"])


@lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker

    checker = FormatChecker()
    checker.checks("date-time", raises=ValueError)(_is_datetime)  # no extra package for RFC 3339
    root = {"$ref": f"#/components/schemas/{name}", "components": _components()}
    return Draft202012Validator(root, format_checker=checker)


def _is_datetime(value: object) -> bool:
    """RFC 3339 date-time with a zone (``Z`` or an offset)."""
    if not isinstance(value, str):
        return True
    if "T" not in value.upper():
        raise ValueError("not an RFC 3339 date-time")
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("an RFC 3339 date-time needs a zone (Z or +hh:mm)")
    return True


def schema_errors(name: str, obj: Any) -> list[str]:
    """Where ``obj`` breaks the 3.0.1 schema ``name`` (``event``, ``report``, ...), one line each."""
    errors = sorted(_validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


def check(name: str, obj: Any) -> None:
    """Raise ``Oadr3Error`` (400) naming the first schema violation of ``obj``."""
    errors = schema_errors(name, obj)
    if errors:
        raise Oadr3Error(f"not a valid OpenADR 3.0.1 {name}: {errors[0]}")


# -- time helpers ---------------------------------------------------------------------------


def iso(seconds: float) -> str:
    """Unix seconds as an RFC 3339 UTC time."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def iso_duration(seconds: int) -> str:
    """Seconds as an ISO 8601 duration (``PT3600S``)."""
    return f"PT{int(seconds)}S"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- the store ------------------------------------------------------------------------------


class Oadr3Store(SqliteStore):
    """Clients, tokens and OpenADR 3 objects in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    # -- client credentials ---------------------------------------------------------------

    def add_client(self, role: str, address: str | None = None) -> tuple[str, str]:
        """Provision client credentials; returns (client_id, client_secret). Give them out of band."""
        if role not in ROLES:
            raise Oadr3Error(f"role {role!r} is not one of {', '.join(ROLES)}")
        if role == "ven" and not address:
            raise Oadr3Error("a VEN client needs the Ethereum address it speaks for")
        client_id, secret = f"{role}-{secrets.token_hex(8)}", secrets.token_urlsafe(32)
        self._write("INSERT INTO clients VALUES (?, ?, ?, ?, ?)",
                    (client_id, _hash(secret), role, address, int(time.time())))
        return client_id, secret

    def issue_token(self, client_id: str, client_secret: str, scope: str = "") -> tuple[str, int, str]:
        """A bearer token for valid credentials: (token, lifetime in s, granted scopes).

        Raises ``Oadr3Error`` 401 for unknown or wrong credentials, 400 for a scope the
        client's role may not have.
        """
        rows = self._rows("SELECT * FROM clients WHERE client_id = ?", (client_id,))
        if not rows or not hmac.compare_digest(rows[0]["secret_hash"], _hash(client_secret)):
            raise Oadr3Error("invalid_client", 401)
        allowed = SCOPES[rows[0]["role"]]
        wanted = set(scope.split()) if scope.strip() else allowed
        if not wanted <= allowed:
            raise Oadr3Error("invalid_scope", 400)
        token = secrets.token_urlsafe(32)
        granted = " ".join(sorted(wanted))
        self._write("INSERT INTO tokens VALUES (?, ?, ?, ?)",
                    (_hash(token), client_id, granted, int(time.time()) + TOKEN_LIFETIME))
        return token, TOKEN_LIFETIME, granted

    def client_for_token(self, token: str) -> Client | None:
        """The client a live bearer token belongs to."""
        rows = self._rows(
            "SELECT c.client_id, c.role, c.address, t.scopes FROM tokens t JOIN clients c USING (client_id) "
            "WHERE t.token_hash = ? AND t.expires_at > ?", (_hash(token), int(time.time())))
        if not rows:
            return None
        row = rows[0]
        return Client(row["client_id"], row["role"], row["address"], frozenset(row["scopes"].split()))

    # -- objects --------------------------------------------------------------------------

    def create(self, kind: str, body: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
        """Store a new object (VTN-provisioned fields set here) and return it."""
        now = iso(time.time())
        obj = dict(body, id=secrets.token_hex(8), createdDateTime=now, modificationDateTime=now, objectType=kind)
        check(kind.lower(), obj)
        name = obj.get("programName") or obj.get("eventName") or obj.get("venName") or obj.get("clientName")
        self._write("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?)",
                    (obj["id"], kind, obj.get("programID"), owner, name, json.dumps(obj)))
        return obj

    def replace(self, kind: str, object_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace an object's content, keeping its id and creation time."""
        old = self.get(kind, object_id)
        if old is None:
            raise Oadr3Error(f"no {kind.lower()} {object_id}", 404)
        obj = dict(body, id=object_id, createdDateTime=old["createdDateTime"],
                   modificationDateTime=iso(time.time()), objectType=kind)
        check(kind.lower(), obj)
        name = obj.get("programName") or obj.get("eventName") or obj.get("venName") or obj.get("clientName")
        self._write("UPDATE objects SET body = ?, name = ?, program_id = ? WHERE id = ? AND kind = ?",
                    (json.dumps(obj), name, obj.get("programID"), object_id, kind))
        return obj

    def delete(self, kind: str, object_id: str) -> dict[str, Any]:
        """Remove an object and return what it was."""
        obj = self.get(kind, object_id)
        if obj is None:
            raise Oadr3Error(f"no {kind.lower()} {object_id}", 404)
        self._write("DELETE FROM objects WHERE id = ? AND kind = ?", (object_id, kind))
        return obj

    def get(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """One object by id, or None."""
        rows = self._rows("SELECT body FROM objects WHERE id = ? AND kind = ?", (object_id, kind))
        return json.loads(rows[0]["body"]) if rows else None

    def owner_of(self, object_id: str) -> str | None:
        """The client that created an object (None for objects the utility published itself)."""
        rows = self._rows("SELECT owner FROM objects WHERE id = ?", (object_id,))
        return rows[0]["owner"] if rows else None

    def find(self, kind: str, *, program_id: str | None = None, name: str | None = None,
             owner: str | None = None) -> list[dict[str, Any]]:
        """Objects of ``kind``, optionally of one program, with one name or one owner, oldest first."""
        clauses, args = ["kind = ?"], [kind]
        for column, value in (("program_id", program_id), ("name", name), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        rows = self._rows(f"SELECT body FROM objects WHERE {' AND '.join(clauses)} ORDER BY rowid", tuple(args))
        return [json.loads(r["body"]) for r in rows]


# -- publishing from the chain ----------------------------------------------------------------


def targets_of(obj: dict[str, Any]) -> dict[str, set[str]]:
    """An object's targets as type → values."""
    out: dict[str, set[str]] = {}
    for target in obj.get("targets") or []:
        out.setdefault(target["type"], set()).update(str(v) for v in target["values"])
    return out


def publish_programme(store: Oadr3Store, context: MarketContext, retailer: str = "utility") -> dict[str, Any]:
    """The program for a contract (created once; later calls return it)."""
    name = str(context.programme)
    found = store.find("PROGRAM", name=name)
    if found:
        return found[0]
    return store.create("PROGRAM", {
        "programName": name, "programLongName": f"Demand reduction market {context.contract} on chain {context.chain_id}",
        "retailerName": retailer, "programType": "DEMAND_REDUCTION_MARKET",
        "payloadDescriptors": [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": NOTICE_PAYLOAD, "units": "KW"},
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": DISPATCH_PAYLOAD, "units": "KW"},
        ],
    })


def _event(program: dict[str, Any], context: MarketContext, payload_type: str, kw: float,
           start: int, end: int, targets: list[dict[str, Any]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "programID": program["id"], "eventName": str(context), "priority": 0,
        "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": payload_type, "units": "KW"}],
        "intervalPeriod": {"start": iso(start), "duration": iso_duration(max(0, end - start))},
        "intervals": [{"id": 0, "payloads": [{"type": payload_type, "values": [kw]}]}],
    }
    if payload_type == DISPATCH_PAYLOAD:
        body["reportDescriptors"] = [{"payloadType": USAGE_PAYLOAD, "readingType": "DIRECT_READ", "units": "KW"}]
    if targets:
        body["targets"] = targets
    return body


def publish_notice(store: Oadr3Store, context: MarketContext, target_watts: int, start: int, end: int) -> dict[str, Any]:
    """An advance notice of a request, for every VEN of the program."""
    program = publish_programme(store, context)
    return store.create("EVENT", _event(program, context, NOTICE_PAYLOAD, target_watts / 1000, start, end, None))


def publish_dispatch(store: Oadr3Store, context: MarketContext, address: str, watts: int,
                     start: int, end: int) -> dict[str, Any]:
    """A winner's load-dispatch event (-accepted kW), targeted at the VEN named by its address."""
    program = publish_programme(store, context)
    targets = [{"type": "VEN_NAME", "values": [address]}]
    return store.create("EVENT", _event(program, context, DISPATCH_PAYLOAD, -watts / 1000, start, end, targets))


def cancel_request(store: Oadr3Store, context: MarketContext) -> int:
    """Delete every event of a cancelled request (3.0 has no event status); returns how many."""
    events = store.find("EVENT", name=str(context))
    for event in events:
        store.delete("EVENT", event["id"])
    return len(events)


def report_watts(report: dict[str, Any]) -> Iterable[tuple[str, float]]:
    """(resource name, W) for each USAGE value in a report (kW in, W out)."""
    for resource in report.get("resources", []):
        for interval in resource.get("intervals", []):
            for payload in interval.get("payloads", []):
                if payload.get("type") == USAGE_PAYLOAD:
                    for value in payload.get("values", []):
                        if isinstance(value, (int, float)) and not isinstance(value, bool):
                            yield resource["resourceName"], float(value) * 1000
