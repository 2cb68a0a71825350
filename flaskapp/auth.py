"""Sign-in, sessions, API tokens and roles of the web app (docs/web.md#sign-in-and-roles).

``init_app(app)`` (one line in ``create_app``) registers the sign-in pages and one guard that
runs before every view:

* public: ``/login``, ``/logout``, static files, ``/api/health``, ``/metrics`` (its own
  ``METRICS_TOKEN``), ``/healthz``, and the OpenADR 3 API (its own client-credential tokens);
* everything else needs a user: the session cookie (a server-side session in the users
  database, ``demand_response.webusers``) or, under ``/api/``, ``Authorization: Bearer
  <token>``. Pages without one redirect to ``/login``; the API answers 401;
* CSRF: every POST/PUT/PATCH/DELETE that is not bearer-authenticated needs its token (the
  sign-in form too); a bearer request carries no cookie, so it needs none;
* roles, by the endpoint's scope (``SCOPES``; the consumer and utility blueprints by
  name; anything else is staff-only, so a new view fails closed):
  ``household`` reads and acts on this server's console only when its bound address is the
  console's account, and never on the utility's pages; ``operator`` reads everything and
  acts on the utility's pages; ``viewer`` reads everything and acts on nothing.

``WEB_AUTH=off`` switches sign-in off for local development: every request is then served
as a developer with every right, but only when it comes from this machine (loopback, not
through a proxy); every page says so in its header.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_wtf import FlaskForm
from werkzeug.exceptions import Forbidden
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from demand_response.errors import UserError
from demand_response.webusers import LoginPolicy, LoginRefused, User, UserStore, users_db_path

from .errors import error_response

log = logging.getLogger("flaskapp.auth")

bp = Blueprint("auth", __name__)

#: Endpoints anyone may reach.
PUBLIC = frozenset({"auth.login", "auth.logout", "static", "api.health", "ops.scrape", "ops.healthz"})
#: Blueprints with an authentication of their own.
OWN_AUTH = frozenset({"openadr3"})
#: The scope of each endpoint outside the consumer and utility blueprints: ``any`` (every
#: signed-in user; no account's data), ``household`` (the console's account's data and
#: actions), ``utility`` (the utility's data and actions; staff only).
SCOPES: dict[str, str] = {
    "index": "any", "api.live": "any",
    "api.request_stack": "any", "api.request_stack_svg": "any", "api.bids_curve": "any",
    "api.status": "household", "api.daemon_status": "household", "api.requests_list": "household",
    "api.request_one": "household", "api.bids_get": "household", "api.bids_put": "household",
    "api.results": "household",
    "api.utility_preview": "utility", "api.utility_requests": "utility",
}
_BLUEPRINT_SCOPES = {"consumer": "household", "utility": "utility"}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OFF = ("off", "0", "false", "no")


@dataclass(frozen=True)
class Viewer:
    """Who is asking: a user of the users database, or the developer of ``WEB_AUTH=off``."""

    name: str
    role: str  # household | operator | viewer | developer
    address: str | None = None
    via: str = "session"  # session | token | off


class LoginForm(FlaskForm):
    """The sign-in form."""

    name = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def init_app(app: Flask) -> None:
    """Register the sign-in pages, the guard and ``current_user`` for templates."""
    # The guard checks CSRF itself, so that bearer-token requests (no cookie) need none.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=policy(app).session_s)  # the cookie's too
    app.register_blueprint(bp)
    app.before_request(_guard)
    app.context_processor(lambda: {"current_user": g.get("viewer"), "auth_off": auth_off(app)})
    if auth_off(app):
        log.warning("sign-in is OFF (WEB_AUTH=off): only requests from this machine are served")


def auth_off(app: Flask | None = None) -> bool:
    """``WEB_AUTH=off``: sign-in switched off (loopback only)."""
    options = (app or current_app).extensions["dr"].config.options
    return options["WEB_AUTH"].strip().lower() in _OFF


def policy(app: Flask | None = None) -> LoginPolicy:
    """The lockout and session-lifetime settings."""
    return LoginPolicy.from_options((app or current_app).extensions["dr"].config.options)


def store(create: bool = False) -> UserStore | None:
    """The users database, or None while it does not exist (``dr web user add`` makes it)."""
    app = current_app
    existing = app.extensions.get("dr_users")
    if existing is not None:
        return existing
    config = app.extensions["dr"].config
    try:
        opened = UserStore(users_db_path(config.settings, config.environ), create=create)
    except UserError:
        return None
    return app.extensions.setdefault("dr_users", opened)


def client_address() -> str:
    """The client's address: the socket's peer, or the proxy's ``X-Forwarded-For`` (its last
    entry, the one the proxy added) when the peer is a trusted proxy (``WEB_FORWARDED_ALLOW_IPS``)."""
    peer = request.remote_addr or "?"
    forwarded = request.headers.get("X-Forwarded-For", "")
    trusted = current_app.extensions["dr"].config.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    allowed = {item.strip() for item in trusted.split(",")}
    if forwarded and ("*" in allowed or peer in allowed):
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def _loopback() -> bool:
    try:
        local = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False
    return local and "X-Forwarded-For" not in request.headers


# -- the guard --------------------------------------------------------------------------------


def _guard() -> Any:
    """Authenticate, check CSRF, authorise; a response stops the request."""
    endpoint = request.endpoint
    if endpoint is None or request.blueprint in OWN_AUTH or endpoint == "static":
        return None  # 404/405 are answered as before; OpenADR 3 checks its own tokens
    if auth_off():
        if not _loopback():
            return error_response(403, "Sign-in is switched off on this server (WEB_AUTH=off), so it only "
                                       "serves this machine. Turn sign-in on to reach it from elsewhere.")
        g.viewer = Viewer("developer", "developer", via="off")
        _check_csrf()
        return None
    bearer = _bearer()
    if bearer is not None and request.path.startswith("/api/") and endpoint not in PUBLIC:  # pages: sessions only
        return _with_token(bearer, endpoint)
    viewer = _session_viewer()
    if viewer is None and endpoint not in PUBLIC:
        return _unauthenticated()
    _check_csrf()
    g.viewer = viewer
    if viewer is not None and endpoint not in PUBLIC:
        _authorise(viewer, endpoint)
    return None


def _with_token(secret: str, endpoint: str) -> Any:
    users = store()
    user = users.token_user(secret) if users is not None else None
    if user is None:
        return _unauthenticated("the bearer token is unknown or revoked; create one with "
                                "`dr web user token NAME`")
    g.viewer = Viewer(user.name, user.role, user.address, via="token")
    _authorise(g.viewer, endpoint)
    return None


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _check_csrf() -> None:
    if request.method in _UNSAFE and current_app.config.get("WTF_CSRF_ENABLED", True):
        current_app.extensions["csrf"].protect()


def _session_viewer() -> Viewer | None:
    sid = session.get("sid")
    users = store() if isinstance(sid, str) else None
    user = users.session_user(sid) if users is not None and isinstance(sid, str) else None
    if user is None:
        session.pop("sid", None)
        return None
    return Viewer(user.name, user.role, user.address)


def still_valid() -> Any:
    """A callable that tells whether this request's session or token is still valid (a live
    stream checks it at every heartbeat: a sign-out elsewhere ends the stream)."""
    viewer = g.get("viewer")
    users = store()
    if viewer is None or viewer.via == "off" or users is None:
        return lambda: True
    if viewer.via == "token":
        secret = _bearer() or ""
        return lambda: users.token_user(secret) is not None
    sid = session.get("sid")
    return lambda: isinstance(sid, str) and users.session_user(sid) is not None


def _unauthenticated(message: str = "sign in first: a session cookie (/login) or "
                                    "Authorization: Bearer <token>") -> Any:
    if request.path.startswith("/api/"):
        response, status = error_response(401, message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="demand-response"'
        return response, status
    if request.method == "GET":
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return redirect(url_for("auth.login"), 303)


def scope_of(endpoint: str) -> str:
    """The scope of an endpoint: ``any``, ``household`` or ``utility`` (staff only: the default)."""
    if endpoint in SCOPES:
        return SCOPES[endpoint]
    return _BLUEPRINT_SCOPES.get(endpoint.partition(".")[0], "utility")


def _authorise(viewer: Viewer, endpoint: str) -> None:
    """Raise 403 unless ``viewer``'s role may do this request."""
    if viewer.role == "developer":
        return
    scope, writes = scope_of(endpoint), request.method in _UNSAFE
    if viewer.role == "viewer":
        if writes:
            raise Forbidden("A viewer account reads everything and changes nothing.")
        return
    if viewer.role == "operator":
        if writes and scope != "utility":
            raise Forbidden("An operator account acts on the utility's dashboard only; a household signs in "
                            "to its own console.")
        return
    if viewer.role == "household":
        if scope == "utility":
            raise Forbidden("A household account sees its own console only, not the utility's dashboard.")
        if scope == "household":
            _own_console(viewer)
        return
    raise Forbidden(f"The role {viewer.role!r} has no rights here.")


def _own_console(viewer: Viewer) -> None:
    """A household acts only on the console of its own address."""
    services = current_app.extensions["dr"]
    if not services.config.consumer_enabled:
        raise Forbidden("This server has no household console (DR_ROLE=utility): a household account has "
                        "nothing to see here.")
    account = services.signers.address("consumer")
    if account is None:
        raise Forbidden("This server cannot tell which account its console bids for (the chain may be down), "
                        "so a household account cannot use it now; retry later.")
    if account.lower() != (viewer.address or "").lower():
        raise Forbidden(f"This console bids for {account}, not for your account's address "
                        f"{viewer.address}: a household sees only its own console.")


# -- the sign-in pages ------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The sign-in form; a success starts a new session (a fresh id and CSRF token)."""
    form = LoginForm()
    users = store()
    problem, status = None, 200
    if users is None:
        problem = "No web user exists yet: create the first with `dr web user add NAME --role operator`."
    elif form.validate_on_submit():
        try:
            user = users.authenticate(form.name.data or "", form.password.data or "", client_address(), policy())
        except LoginRefused as exc:
            problem, status = str(exc)[:1].upper() + str(exc)[1:] + ".", 401 if exc.retry_after is None else 429
            log.warning("sign-in refused for %r from %s: %s", (form.name.data or "")[:64], client_address(), exc)
        else:
            return _start_session(users, user)
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form, problem=problem,
                           next=request.args.get("next", "")), status


def _start_session(users: UserStore, user: User) -> Any:
    target = _safe_next(request.args.get("next"))
    session.clear()  # no fixation: a new id, a new CSRF token
    session["sid"] = users.open_session(user, policy().session_s, client_address())
    session.permanent = True
    log.info("%s (%s) signed in from %s", user.name, user.role, client_address())
    return redirect(target, 303)


@bp.post("/logout")
def logout() -> Any:
    """End the session (its id is deleted on the server: a copied cookie stops working)."""
    sid = session.get("sid")
    users = store()
    if isinstance(sid, str) and users is not None:
        users.close_session(sid)
    session.clear()
    flash("You are signed out.", "ok")
    return redirect(url_for("auth.login"), 303)
