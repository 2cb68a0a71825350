"""Log formats: the text lines people read, or JSON lines for a log shipper (``LOG_FORMAT``).

``formatter()`` gives the formatter of the console (stderr) handler, ``formatter(file=True)``
the one of a ``--log-file`` handler. The text formats are the ones ``dr`` has always written;
the JSON format writes one object a line with the same fields::

    {"time": "2026-11-30T01:02:03.456Z", "level": "INFO", "logger": "demand_response.consumer",
     "message": "...", "thread": "MainThread"}

plus ``"exception"`` when there is one. Both redact secrets: the values of the password and
key settings found in the environment (``*_PASS``, ``*_PASSWORD``, ``*_PRIVATE_KEY``,
``*_TOKEN``, ``*_PROJECT_ID``, ``FLASK_SECRET_KEY``) and the credentials of any
``scheme://user:pass@host`` URL.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any, Iterable, Mapping

#: Console lines: ``01:02:03.456 message``.
TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(message)s"
TEXT_DATEFMT = "%H:%M:%S"
#: File lines: ``2026-11-30 01:02:03,456 INFO demand_response.consumer message``.
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")
REDACTED = "[redacted]"

_SECRET_KEY = re.compile(r"(_PASS|_PASSWORD|_PRIVATE_KEY|SECRET_KEY|_TOKEN|_PROJECT_ID)$")
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def secrets_in(environ: Mapping[str, str]) -> list[str]:
    """The secret values among ``environ`` (passwords, keys), longest first; a 0x key also bare."""
    found: set[str] = set()
    for key, value in environ.items():
        value = (value or "").strip()
        if _SECRET_KEY.search(key.upper()) and len(value) >= 4:
            found.add(value)
            if value.lower().startswith("0x"):
                found.add(value[2:])
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (case-insensitively) and URL credentials replaced."""
    for secret in secrets:
        if secret and secret.lower() in text.lower():
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + "@", text)


class _Redacting(logging.Formatter):
    """A formatter whose output never holds the secrets of the environment it started in."""

    def __init__(self, *args: Any, secrets: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secrets = list(secrets) if secrets is not None else secrets_in(os.environ)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class TextFormatter(_Redacting):
    """The classic text lines, redacted."""


class JsonFormatter(_Redacting):
    """One JSON object a line: time (UTC, ISO 8601, ms), level, logger, message, thread[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad %-format must not lose the line
            message = f"{record.msg!r} (unformattable: {type(exc).__name__})"
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "thread": record.threadName,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(out, ensure_ascii=False), [json.dumps(s)[1:-1] for s in self.secrets])


def log_format(value: str | None = None) -> str:
    """``text`` or ``json``: ``value``, else ``LOG_FORMAT`` from the environment, else text."""
    from .config import ConfigError

    chosen = (value if value not in (None, "") else os.environ.get("LOG_FORMAT") or "text").strip().lower()
    if chosen not in FORMATS:
        raise ConfigError(f"LOG_FORMAT must be text or json, not {chosen!r}")
    return chosen


def formatter(kind: str | None = None, *, file: bool = False) -> logging.Formatter:
    """The formatter for a console (or, ``file=True``, a log file) handler: ``kind`` or LOG_FORMAT."""
    if log_format(kind) == "json":
        return JsonFormatter()
    if file:
        return TextFormatter(FILE_FORMAT)
    return TextFormatter(TEXT_FORMAT, TEXT_DATEFMT)


def configure(level: int | str = logging.INFO, kind: str | None = None, stream: Any = None) -> None:
    """Root logging to ``stream`` (stderr) in ``kind`` / LOG_FORMAT, for processes that are not
    ``dr`` (the web app under gunicorn); web3 and urllib3 stay at WARNING."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(kind))
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else getattr(logging, str(level).upper(), logging.INFO))
    for noisy in ("web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
