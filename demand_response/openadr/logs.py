"""OpenLEADR's log lines, made fit for a daemon's log (one line per fact)."""

from __future__ import annotations

import logging
import time

#: OpenLEADR's line for an exception a handler raised; our handlers raise ``InvalidIdError`` only
#: to refuse a VEN's message, after logging one line of their own that says why.
_HANDLER_ERROR = "An exception occurred during the execution of your"
#: OpenLEADR's client logs this, then the error, at every poll while the VTN cannot be reached.
_CANNOT_CONNECT = "Could not connect to server with URL"
#: Seconds before an unreachable VTN is mentioned again.
REPEAT_S = 600.0


class _OneLineOpenLeadrLogs(logging.Filter):
    """OpenLEADR's client logs ``create_opt``'s reply as ``logger.info(type, payload)``, a message
    with arguments and no placeholder, which logging would print as a traceback: join them. Its
    server's report of a refusal our handler raised (``InvalidIdError``) repeats our own line: drop
    it. An unreachable VTN (two lines at every poll) is said once per ``REPEAT_S``."""

    def __init__(self) -> None:
        super().__init__()
        self._said: dict[str, float] = {}  # "cannot connect" line -> when it last went out
        self._drop_detail = False  # the error line that follows a dropped "cannot connect"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.msg, str) and "%" not in record.msg:
            record.msg, record.args = f"{record.msg} {record.args}", ()
        text = record.getMessage()
        drop_detail, self._drop_detail = self._drop_detail, False
        if text.startswith(_HANDLER_ERROR) and "InvalidIdError" in text:
            return False
        if text.startswith(_CANNOT_CONNECT):
            now, last = time.monotonic(), self._said.get(text)
            if last is not None and now - last < REPEAT_S:
                self._drop_detail = True
                return False
            self._said[text] = now
            record.msg, record.args = f"{text} (said again in {REPEAT_S / 60:.0f} min if it lasts)", ()
            return True
        return not (drop_detail and record.levelno >= logging.ERROR)


def fix_openleadr_logs() -> None:
    """Install the filter on the ``openleadr`` logger (once)."""
    target = logging.getLogger("openleadr")
    if not any(isinstance(f, _OneLineOpenLeadrLogs) for f in target.filters):
        target.addFilter(_OneLineOpenLeadrLogs())
