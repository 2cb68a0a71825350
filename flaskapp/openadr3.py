"""OpenADR 3.0.1 VTN API (REST + JSON): programs, events, reports, VENs, client-credential tokens.

Register it in ``create_app`` with one line: ``openadr3.register(app)`` (it also exempts the
blueprint from the console's CSRF check: its writes carry bearer tokens, not cookies).
Configuration: ``OPENADR3_DB`` (SQLite path; default ``<instance>/openadr3.sqlite``) and,
optionally, ``OPENADR3_ON_REPORT`` (called with ``(address, report)`` for each report a VEN
posts: the telemetry feed). Objects are checked against the vendored 3.0.1 schema going in
and coming out; errors are 3.0 ``problem`` objects with one-line details.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from demand_response.openadr.oadr3 import Client, Oadr3Error, Oadr3Store, check, targets_of

PREFIX = "/openadr3/3.0.1"
MAX_BODY = 256 * 1024
MAX_LIMIT = 500

bp = Blueprint("openadr3", __name__, url_prefix=PREFIX)


def register(app: Flask) -> None:
    """Register the blueprint on ``app`` and exempt it from CSRF (bearer tokens, no cookies)."""
    app.register_blueprint(bp)
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


def store() -> Oadr3Store:
    """The app's OpenADR 3 store (opened on first use)."""
    ext = current_app.extensions
    if "openadr3" not in ext:
        import os

        path = current_app.config.get("OPENADR3_DB") or os.path.join(current_app.instance_path, "openadr3.sqlite")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        ext["openadr3"] = Oadr3Store(path)
    return ext["openadr3"]


def _problem(detail: str, status: int) -> tuple[Response, int]:
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              409: "Conflict", 413: "Payload Too Large"}
    return jsonify({"type": "about:blank", "title": titles.get(status, "Error"), "status": status,
                    "detail": detail}), status


@bp.errorhandler(Oadr3Error)
def _oadr3_error(exc: Oadr3Error) -> tuple[Response, int]:
    return _problem(str(exc), exc.status)


@bp.errorhandler(404)
def _not_found(exc: Exception) -> tuple[Response, int]:
    return _problem("no such OpenADR 3 resource", 404)


@bp.errorhandler(405)
def _not_allowed(exc: Exception) -> tuple[Response, int]:
    return _problem(f"{request.method} is not allowed here", 405)


# -- authentication ---------------------------------------------------------------------------


@bp.post("/auth/token")
def token() -> tuple[Response, int] | Response:
    """Client credentials grant (RFC 6749 §4.4): form fields or HTTP Basic for the client."""
    form = request.form
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if request.authorization and request.authorization.type == "basic":
        client_id, secret = request.authorization.username or "", request.authorization.password or ""
    if form.get("grant_type") != "client_credentials":
        return jsonify({"error": "unsupported_grant_type",
                        "error_description": "only grant_type=client_credentials is supported"}), 400
    if not client_id or not secret or len(client_id) > 4096 or len(secret) > 4096:
        return jsonify({"error": "invalid_request",
                        "error_description": "client_id and client_secret are required"}), 400
    try:
        access, lifetime, scopes = store().issue_token(client_id, secret, form.get("scope", ""))
    except Oadr3Error as exc:
        detail = "unknown client or wrong secret" if exc.status == 401 else "a scope this client may not have"
        return jsonify({"error": str(exc), "error_description": detail}), exc.status
    return jsonify({"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scopes})


@bp.before_request
def _authenticate() -> tuple[Response, int] | None:
    if request.endpoint == "openadr3.token":
        return None
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _problem(f"request body over {MAX_BODY // 1024} KiB", 413)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return _problem("a bearer token is required: POST client credentials to /auth/token", 401)
    client = store().client_for_token(header[7:].strip())
    if client is None:
        return _problem("the bearer token is unknown or expired: fetch a new one from /auth/token", 401)
    g.oadr3_client = client
    return None


def _client() -> Client:
    return g.oadr3_client


def _need(scope: str, role: str | None = None) -> Client:
    client = _client()
    if scope not in client.scopes or (role is not None and client.role != role):
        raise Oadr3Error(f"this client may not do that (needs scope {scope}{' as ' + role if role else ''})", 403)
    return client


def _body(kind: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Oadr3Error(f"the body must be a JSON {kind} object")
    for provisioned in ("id", "createdDateTime", "modificationDateTime"):
        body.pop(provisioned, None)  # the VTN provisions these
    body["objectType"] = kind.upper()
    check(kind, body)
    return body


def _page(items: list[dict[str, Any]]) -> Response:
    try:
        skip = int(request.args.get("skip", 0))
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise Oadr3Error("skip and limit must be whole numbers") from None
    if skip < 0 or not 0 <= limit <= MAX_LIMIT:
        raise Oadr3Error(f"skip must be >= 0 and limit between 0 and {MAX_LIMIT}")
    return jsonify(items[skip:skip + limit])


def _target_filter(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kind, values = request.args.get("targetType"), request.args.getlist("targetValues")
    if not kind:
        return items
    return [i for i in items if targets_of(i).get(kind, set()) & set(values)]


def _get(kind: str, object_id: str) -> dict[str, Any]:
    obj = store().get(kind, object_id)
    if obj is None:
        raise Oadr3Error(f"no {kind.lower()} {object_id}", 404)
    return obj


# -- programs ---------------------------------------------------------------------------------


@bp.get("/programs")
def programs() -> Response:
    _need("read_all")
    return _page(_target_filter(store().find("PROGRAM")))


@bp.get("/programs/<program_id>")
def program(program_id: str) -> Response:
    _need("read_all")
    return jsonify(_get("PROGRAM", program_id))


@bp.post("/programs")
def create_program() -> tuple[Response, int]:
    client = _need("write_programs", "bl")
    body = _body("program")
    if store().find("PROGRAM", name=body["programName"]):
        raise Oadr3Error(f"a program named {body['programName']!r} exists", 409)
    return jsonify(store().create("PROGRAM", body, client.client_id)), 201


@bp.put("/programs/<program_id>")
def replace_program(program_id: str) -> Response:
    _need("write_programs", "bl")
    return jsonify(store().replace("PROGRAM", program_id, _body("program")))


@bp.delete("/programs/<program_id>")
def delete_program(program_id: str) -> Response:
    _need("write_programs", "bl")
    return jsonify(store().delete("PROGRAM", program_id))


# -- events -----------------------------------------------------------------------------------


def _visible(event: dict[str, Any], client: Client) -> bool:
    """A VEN sees untargeted events and those naming it; the business logic sees all."""
    if client.role == "bl":
        return True
    names = targets_of(event).get("VEN_NAME")
    return names is None or client.address in names


@bp.get("/events")
def events() -> Response:
    client = _need("read_all")
    found = store().find("EVENT", program_id=request.args.get("programID") or None)
    return _page(_target_filter([e for e in found if _visible(e, client)]))


@bp.get("/events/<event_id>")
def event(event_id: str) -> Response:
    client = _need("read_all")
    found = _get("EVENT", event_id)
    if not _visible(found, client):
        raise Oadr3Error(f"no event {event_id}", 404)
    return jsonify(found)


@bp.post("/events")
def create_event() -> tuple[Response, int]:
    client = _need("write_events", "bl")
    body = _body("event")
    _get("PROGRAM", body["programID"])
    return jsonify(store().create("EVENT", body, client.client_id)), 201


@bp.put("/events/<event_id>")
def replace_event(event_id: str) -> Response:
    _need("write_events", "bl")
    return jsonify(store().replace("EVENT", event_id, _body("event")))


@bp.delete("/events/<event_id>")
def delete_event(event_id: str) -> Response:
    _need("write_events", "bl")
    return jsonify(store().delete("EVENT", event_id))


# -- reports ----------------------------------------------------------------------------------


def _own_report(report_id: str) -> dict[str, Any]:
    client = _client()
    found = _get("REPORT", report_id)
    if client.role == "ven" and store().owner_of(report_id) != client.client_id:
        raise Oadr3Error(f"no report {report_id}", 404)
    return found


@bp.get("/reports")
def reports() -> Response:
    client = _need("read_all")
    owner = client.client_id if client.role == "ven" else None
    found = store().find("REPORT", program_id=request.args.get("programID") or None, owner=owner)
    for field in ("eventID", "clientName"):
        if request.args.get(field):
            found = [r for r in found if r.get(field) == request.args[field]]
    return _page(found)


@bp.get("/reports/<report_id>")
def report(report_id: str) -> Response:
    _need("read_all")
    return jsonify(_own_report(report_id))


def _check_report(client: Client, body: dict[str, Any]) -> None:
    if body["clientName"] != client.address:
        raise Oadr3Error(f"clientName must be this VEN's address {client.address}", 403)
    target = _get("EVENT", body["eventID"])
    if target["programID"] != body["programID"] or not _visible(target, client):
        raise Oadr3Error(f"event {body['eventID']} is not one of this VEN's events in program {body['programID']}", 400)


@bp.post("/reports")
def create_report() -> tuple[Response, int]:
    client = _need("write_reports", "ven")
    body = _body("report")
    _check_report(client, body)
    created = store().create("REPORT", body, client.client_id)
    hook: Callable[[str, dict[str, Any]], None] | None = current_app.config.get("OPENADR3_ON_REPORT")
    if hook is not None:
        hook(client.address or "", created)
    return jsonify(created), 201


@bp.put("/reports/<report_id>")
def replace_report(report_id: str) -> Response:
    client = _need("write_reports", "ven")
    _own_report(report_id)
    body = _body("report")
    _check_report(client, body)
    return jsonify(store().replace("REPORT", report_id, body))


@bp.delete("/reports/<report_id>")
def delete_report(report_id: str) -> Response:
    _need("write_reports", "ven")
    _own_report(report_id)
    return jsonify(store().delete("REPORT", report_id))


# -- VENs -------------------------------------------------------------------------------------


def _own_ven(ven_id: str) -> dict[str, Any]:
    client = _client()
    found = _get("VEN", ven_id)
    if client.role == "ven" and found["venName"] != client.address:
        raise Oadr3Error(f"no ven {ven_id}", 404)
    return found


@bp.get("/vens")
def vens() -> Response:
    client = _need("read_all")
    name = client.address if client.role == "ven" else (request.args.get("venName") or None)
    return _page(store().find("VEN", name=name))


@bp.get("/vens/<ven_id>")
def ven(ven_id: str) -> Response:
    _need("read_all")
    return jsonify(_own_ven(ven_id))


@bp.post("/vens")
def create_ven() -> tuple[Response, int]:
    client = _need("write_vens")
    body = _body("ven")
    if client.role == "ven" and body["venName"] != client.address:
        raise Oadr3Error(f"venName must be this client's address {client.address}", 403)
    if store().find("VEN", name=body["venName"]):
        raise Oadr3Error(f"a VEN named {body['venName']!r} is registered", 409)
    return jsonify(store().create("VEN", body, client.client_id)), 201


@bp.put("/vens/<ven_id>")
def replace_ven(ven_id: str) -> Response:
    client = _need("write_vens")
    _own_ven(ven_id)
    body = _body("ven")
    if client.role == "ven" and body["venName"] != client.address:
        raise Oadr3Error(f"venName must be this client's address {client.address}", 403)
    return jsonify(store().replace("VEN", ven_id, body))


@bp.delete("/vens/<ven_id>")
def delete_ven(ven_id: str) -> Response:
    _need("write_vens")
    _own_ven(ven_id)
    return jsonify(store().delete("VEN", ven_id))
