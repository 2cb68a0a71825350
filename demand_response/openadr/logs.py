"""OpenLEADR's log lines, made fit for a daemon's log (one line per fact)."""

from __future__ import annotations

import logging

#: OpenLEADR's line for an exception a handler raised; our handlers raise ``InvalidIdError`` only
#: to refuse a VEN's message, after logging one line of their own that says why.
_HANDLER_ERROR = "An exception occurred during the execution of your"


class _OneLineOpenLeadrLogs(logging.Filter):
    """OpenLEADR's client logs ``create_opt``'s reply as ``logger.info(type, payload)``, a message
    with arguments and no placeholder, which logging would print as a traceback: join them. Its
    server's report of a refusal our handler raised (``InvalidIdError``) repeats our own line: drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.msg, str) and "%" not in record.msg:
            record.msg, record.args = f"{record.msg} {record.args}", ()
        if isinstance(record.msg, str) and record.msg.startswith(_HANDLER_ERROR) and "InvalidIdError" in record.msg:
            return False
        return True


def fix_openleadr_logs() -> None:
    """Install the filter on the ``openleadr`` logger (once)."""
    target = logging.getLogger("openleadr")
    if not any(isinstance(f, _OneLineOpenLeadrLogs) for f in target.filters):
        target.addFilter(_OneLineOpenLeadrLogs())
