"""What every ``dr`` command group shares: option groups, settings, logging, prompts, signals.

Imports nothing heavy at module level: ``dr --help`` and a consumer board's start stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import signal
import sys
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..errors import UserError  # noqa: F401  (a problem with the command's input: one line)

if TYPE_CHECKING:
    from ..config import Settings

# -- option groups ----------------------------------------------------------------------------


def log_options(parser: argparse.ArgumentParser) -> None:
    """-v / -q / --log-file."""
    g = parser.add_argument_group("output")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    g.add_argument("--log-file", help="also append log lines to this file")


def env_options(parser: argparse.ArgumentParser) -> None:
    """--env-file, for commands that read settings but no chain."""
    parser.add_argument("--env-file", help="the .env file to read (default ./.env or DR_ENV_FILE)")


def connection_options(parser: argparse.ArgumentParser, contract: bool = True) -> None:
    """How a command finds the chain (and, with ``contract``, the contract), plus the output options."""
    g = parser.add_argument_group("connection")
    g.add_argument("--network", help="dev (default), ganache, anvil, sepolia, mainnet; a named network's "
                                     "chain id is always checked, also when RPC_URL gives the URL")
    g.add_argument("--rpc-url", help="JSON-RPC endpoint (overrides RPC_URL and --network's URL)")
    if contract:
        g.add_argument("--contract", dest="contract_address", help="contract address (overrides CONTRACT_ADDRESS)")
    g.add_argument("--env-file", help="the .env file to read (default ./.env or DR_ENV_FILE)")
    if contract:
        g.add_argument("--deployments-file", help="where deployments are recorded (default ./deployments.json)")
    log_options(parser)


def calendar_options(parser: argparse.ArgumentParser) -> None:
    """``--timezone`` and ``--holidays``: the baselines' local calendar (``mv.calendar``)."""
    parser.add_argument("--timezone", metavar="ZONE",
                        help="the baselines' local time zone: an IANA name (America/Los_Angeles) or an offset "
                             "(+01:00) (BASELINE_TIMEZONE; default UTC)")
    parser.add_argument("--holidays", metavar="DATES",
                        help="holidays, not business days: YYYY-MM-DD,YYYY-MM-DD or @FILE, one date a line "
                             "(BASELINE_HOLIDAYS)")


def calendar_from(args: argparse.Namespace, settings: Any) -> Any:
    """The ``mv.calendar.Calendar`` of ``--timezone``/``--holidays``, else the settings."""
    from ..mv.calendar import Calendar

    return Calendar.from_settings(getattr(args, "timezone", None) or settings.get("BASELINE_TIMEZONE"),
                                  getattr(args, "holidays", None) or settings.get("BASELINE_HOLIDAYS"))


def decimal_arg(text: str) -> Decimal:
    """An argparse type: an exact decimal number (kW and ETH are never binary floats)."""
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


# -- settings ---------------------------------------------------------------------------------


def settings_from(args: argparse.Namespace, **extra: Any) -> "Settings":
    """Settings from .env, the environment and the connection flags (``extra`` on top)."""
    from ..config import load_settings

    flags = {k: getattr(args, k, None) for k in ("network", "rpc_url", "contract_address", "deployments_file")}
    flags.update(extra)
    return load_settings(getattr(args, "env_file", None), **flags)


def rpc_name(settings: Any) -> str:
    """The endpoint as log lines name it (credentials redacted)."""
    from ..chain import redact_url

    return f"RPC endpoint {redact_url(settings.rpc_url)}"


# -- process ----------------------------------------------------------------------------------


def setup_logging(args: argparse.Namespace, default: str = "INFO") -> None:
    """Log lines to stderr (and ``--log-file``) at the level -v / -q ask for, in LOG_FORMAT
    (``text``, or ``json`` lines for a log collector; ``demand_response.logs``: secrets redacted)."""
    from ..logs import formatter

    level = logging.DEBUG if getattr(args, "verbose", False) else (
        logging.WARNING if getattr(args, "quiet", False) else getattr(logging, default, logging.INFO))
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    root.addHandler(handler)
    if getattr(args, "log_file", None):
        file_handler = logging.FileHandler(args.log_file)
        file_handler.setFormatter(formatter(file=True))
        root.addHandler(file_handler)
    root.setLevel(level)
    for noisy in ("web3", "urllib3", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def serving_metrics(settings: "Settings", daemons: Iterable[str], contract: str | None = None) -> Iterator[Any]:
    """Serve ``/metrics`` and ``/healthz`` on METRICS_PORT (docs/production.md) while the block
    runs; nothing without METRICS_PORT. ``daemons``: the listener labels /healthz expects to beat."""
    from .. import health, metrics

    if contract is not None and settings.contract_address is None:
        settings = settings.with_(contract_address=contract)
    served = metrics.serve_from_settings(settings, health.HealthCheck.from_settings(settings, list(daemons)))
    try:
        yield served
    finally:
        if served is not None:
            served.close()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so daemons stop cleanly mid-wait."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logging.getLogger("demand_response").info("stopping (%s)…", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


# -- prompts ----------------------------------------------------------------------------------


def ask(prompt: str, default: str | None = None) -> str:
    """One answer from stdin; Enter takes ``default``."""
    suffix = f" [{default}]" if default is not None else ""
    try:
        answer = input(f"{prompt}{suffix}: ").strip()
    except EOFError:
        answer = ""
    if not answer and default is None:
        raise UserError(f"no answer for {prompt!r}")
    return answer or str(default)


def number(text: str, what: str, kind: Callable[[str], Any] = float) -> Any:
    """``text`` as a number, or a one-line error naming ``what``."""
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number") from None


def read_secret(path: str | None, prompt: str, confirm: bool = False) -> str:
    """A password or key from a file, or typed without echo."""
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the secret; pass --password-file / --key-file")
    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat: ") != value:
        raise UserError("the two entries differ")
    return value
