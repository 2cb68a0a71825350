"""The web app's configuration: the package's ``Settings`` plus the web-only keys.

The keys ``dr`` reads (``.env``, the environment, see ``.env.template``) are merged by
``demand_response.config.load_settings``; the web-only keys (``APP_KEYS``, docs/web.md)
come from the app's config, then the environment, then the same ``.env`` values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from demand_response.config import KEYS, ConfigError, Settings, load_settings

from .errors import one_line
from .units import DEFAULT_MONEY, Money, UnitError

#: App-only settings (besides demand_response.config.KEYS), with their defaults.
APP_KEYS: dict[str, str] = {
    "DR_ROLE": "auto",  # auto | consumer | utility | both
    "DR_CONSUMER_INDEX": "1",  # dev chains only: the node's unlocked account for the consumer
    "DR_UTILITY_INDEX": "0",  # dev chains only: the node's unlocked account for the utility
    "DR_HOUSEHOLD": "0",  # gridsim household index for "fill from simulation"
    "DR_GRIDSIM_SEED": "0",
    "DR_REFRESH_MS": "2000",  # how often pages poll the JSON API
    "DR_HISTORY": "50",  # how many recent requests pages list
    # sign-in (flaskapp/auth.py, docs/web.md): on, or off for local development (loopback only)
    "WEB_AUTH": "on", "WEB_USERS_DB": "", "WEB_SESSION_MINUTES": "480", "WEB_LOGIN_MAX_FAILURES": "5",
    "WEB_LOGIN_MAX_CLIENT_FAILURES": "20", "WEB_LOGIN_LOCKOUT_MINUTES": "15",
    # live updates (flaskapp/live.py): server-sent events, or off (pages poll every DR_REFRESH_MS)
    "WEB_LIVE": "on", "WEB_LIVE_STREAMS": "", "WEB_LIVE_MAX_S": "300", "WEB_LIVE_HEARTBEAT_S": "15",
}


@dataclass
class AppConfig:
    """Settings, web options and the first configuration problem found (shown on every page)."""

    settings: Settings
    environ: dict[str, str]
    options: dict[str, str]
    unit: Money = DEFAULT_MONEY  # the market's currency and reference rate (demand_response.units)
    error: str | None = None

    @classmethod
    def load(cls, overrides: Mapping[str, Any]) -> "AppConfig":
        """Merge ``overrides`` (the app's config) over the environment and ``.env``."""
        environ = dict(os.environ)
        rates = [k for k in overrides if isinstance(k, str) and "_PER_" in k]  # USD_PER_ETH…
        for key in (*KEYS, *APP_KEYS, "DR_ENV_FILE", *rates):
            if overrides.get(key) is not None:
                environ[key] = str(overrides[key])
        error = None
        try:
            settings = load_settings(environ=environ)
        except ConfigError as exc:
            error, settings = one_line(exc), Settings()
        options = {key: environ.get(key) or settings.get(key) or default for key, default in APP_KEYS.items()}
        config = cls(settings, environ, options, error=error)
        try:
            config.unit = Money.for_market(settings.network, {**settings.values, **environ})
        except UnitError as exc:
            config.error = config.error or one_line(exc)
        for key in ("DR_REFRESH_MS", "DR_HISTORY", "DR_HOUSEHOLD", "DR_GRIDSIM_SEED",
                    "DR_CONSUMER_INDEX", "DR_UTILITY_INDEX", "WEB_SESSION_MINUTES", "WEB_LOGIN_MAX_FAILURES",
                    "WEB_LOGIN_MAX_CLIENT_FAILURES", "WEB_LOGIN_LOCKOUT_MINUTES", "WEB_LIVE_MAX_S",
                    "WEB_LIVE_HEARTBEAT_S"):
            if not options[key].strip().isdigit():
                config.error = config.error or f"{key}={options[key]!r} is not a whole number"
                options[key] = APP_KEYS[key]
        return config

    def number(self, key: str) -> int:
        """A web-only whole-number option."""
        return int(self.options[key])

    @property
    def refresh_ms(self) -> int:
        """How often pages poll the JSON API."""
        return self.number("DR_REFRESH_MS")

    @property
    def live(self) -> bool:
        """Pages update over server-sent events (``WEB_LIVE``), polling only when the stream fails."""
        return self.options["WEB_LIVE"].strip().lower() not in ("off", "0", "false", "no")

    @property
    def live_streams(self) -> int:
        """Live streams one worker serves at most (``WEB_LIVE_STREAMS``; default: its threads less
        four, so pages and the API always have threads left; 12 outside gunicorn)."""
        value = self.options["WEB_LIVE_STREAMS"].strip()
        if value.isdigit():
            return int(value)
        threads = self.environ.get("WEB_THREADS", "").strip()
        return max(1, int(threads) - 4) if threads.isdigit() else 12

    @property
    def history(self) -> int:
        """How many recent requests pages list."""
        return self.number("DR_HISTORY")

    @property
    def household(self) -> int:
        """The gridsim household "fill from simulation" uses."""
        return self.number("DR_HOUSEHOLD")

    @property
    def gridsim_seed(self) -> int:
        """The gridsim seed."""
        return self.number("DR_GRIDSIM_SEED")

    # -- roles ---------------------------------------------------------------------------

    def configured(self, role: str) -> bool:
        """An account (key or keystore) is configured for ``role``."""
        prefix = role.upper()
        return bool(self.environ.get(f"{prefix}_PRIVATE_KEY") or self.settings.get(f"{prefix}_ACCOUNT"))

    @property
    def role(self) -> str:
        """The configured role setting (auto, consumer, utility or both)."""
        return self.options["DR_ROLE"].strip().lower()

    @property
    def utility_enabled(self) -> bool:
        """Utility pages: DR_ROLE utility/both, or auto with a utility account configured."""
        return self.role in ("utility", "both") or (self.role == "auto" and self.configured("utility"))

    @property
    def consumer_enabled(self) -> bool:
        """Consumer pages: everything except DR_ROLE=utility."""
        return self.role != "utility"
