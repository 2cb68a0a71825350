"""Errors of the web app and the pages and JSON replies they become.

The HTTP status comes from the error's type (``status_of``), never from its text:

* a form without its CSRF token: 400; a role this server does not serve: 403;
* the node does not answer (``demand_response.errors.ConnectionProblem``, or what
  ``is_connection_error`` recognises by type): 503, and the session is dropped so the next
  request reconnects;
* any other error of the package (``DRError``: the user's input, files, accounts, a
  contract refusal, a request the planner refuses): 409, with its one line;
* Werkzeug's HTTP errors keep their code; anything else is a 500 that names the type and
  logs the traceback on the server (never shown on the page).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from demand_response.errors import AccountError, ChainError, DRError, is_connection_error

log = logging.getLogger("flaskapp")

T = TypeVar("T")


class RoleDisabled(Exception):
    """A page of a role this app is not configured for."""


class NeedsPassword(AccountError):
    """The role's keystore is configured without a password: ask for it on the page."""

    def __init__(self, role: str, name: str) -> None:
        super().__init__(f"the {role} keystore {name!r} is locked; enter its password to unlock it")
        self.role = role
        self.name = name


#: Errors a user can cause or fix; pages show their one-line message, never a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (DRError,)

#: Titles of the error page, by status.
_TITLES = {400: "Bad request", 403: "Not available", 404: "Not found", 405: "Not allowed", 409: "Problem",
           413: "Too large", 503: "Chain unavailable"}

#: Messages of Werkzeug's HTTP errors, in the app's words.
_HTTP_MESSAGES = {404: "There is no page at this address.",
                  405: "This address does not accept that kind of request.",
                  413: "The request is larger than 1 MiB."}


def one_line(exc: BaseException) -> str:
    """An exception as one line a person can act on (no traceback, no secrets)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:400]


def sentence(text: str) -> str:
    """``text`` as a sentence: capitalised, with a full stop (for messages under a field)."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the node could not be reached (by its type or its causes' types)."""
    return is_connection_error(exc)


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error, by its type."""
    if isinstance(exc, CSRFError):
        return 400
    if isinstance(exc, HTTPException):
        return exc.code or 500
    if isinstance(exc, RoleDisabled):
        return 403
    if is_unavailable(exc):
        return 503
    if isinstance(exc, USER_ERRORS):
        return 409
    return 500


def message_of(exc: BaseException, status: int) -> str:
    """The one line the page or the JSON reply shows."""
    if isinstance(exc, CSRFError):
        return "The form was missing its security token or it had expired. Reload the page and submit again."
    if isinstance(exc, HTTPException):
        return _HTTP_MESSAGES.get(status) or exc.description or exc.name
    if status == 503 and not isinstance(exc, ChainError):
        return "The chain stopped answering. Check that the node is running; this page retries on reload."
    if status == 500:
        return f"An unexpected {type(exc).__name__} happened; the server log has the details."
    return one_line(exc)


def error_response(status: int, message: str, title: str | None = None) -> Any:
    """The error as JSON under /api/, as the error page elsewhere."""
    if request.path.startswith("/api/"):
        return jsonify({"error": message, "status": status}), status
    title = title or _TITLES.get(status, "Something went wrong")
    return render_template("error.html", title=title, message=message, status=status), status


def _handle(exc: Exception) -> Any:
    status = status_of(exc)
    if status == 503:
        current_app.extensions["dr"].chain.drop()
    elif status == 500:
        log.exception("unexpected error on %s", request.path)
    title = "Form expired" if isinstance(exc, CSRFError) else None
    if isinstance(exc, HTTPException) and status not in _TITLES:
        title = exc.name
    response = error_response(status, message_of(exc, status), title)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: a 405 names what is allowed
        body, code = response
        body = current_app.make_response((body, code))
        body.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return body
    return response


def register(app: Flask) -> None:
    """Send every error through ``_handle``."""
    app.register_error_handler(Exception, _handle)
    for code in (400, 404, 405, 413):  # raised by Werkzeug before any view runs
        app.register_error_handler(code, _handle)


def attempt(fn: Callable[[], T], default: Any = None) -> tuple[T | Any, str | None]:
    """``(fn(), None)``, or ``(default, one-line reason)`` for a user-fixable or chain problem:
    for pages that show what they can while the chain is down."""
    try:
        return fn(), None
    except Exception as exc:
        if is_unavailable(exc):
            current_app.extensions["dr"].chain.drop()
            if not isinstance(exc, ChainError):
                return default, "the chain stopped answering; check that the node is running (this page retries)"
            return default, one_line(exc)
        if isinstance(exc, USER_ERRORS):
            return default, one_line(exc)
        raise
