"""Configuration: ``.env`` file, then environment variables, then command-line flags on top.

Networks
    ``dev``      the local development chain (``dr node`` or ``make demo`` start one; default
                 http://127.0.0.1:8545)
    ``ganache``  a ganache on http://127.0.0.1:8545
    ``anvil``    an anvil on http://127.0.0.1:8545
    ``sepolia``  Sepolia through Infura (needs ``WEB3_INFURA_PROJECT_ID``)
    anything else: set ``RPC_URL`` (a private PoA chain, another provider...). ``RPC_URL``
    always wins over the network's default URL, but a named network with a known chain id
    (``--network sepolia``, ``NETWORK=mainnet``...) is still checked: the endpoint must
    report that chain id (``expected_chain_id``, checked by ``check_chain_id``).

Deployments are recorded per network and chain id in ``deployments.json`` (path:
``DEPLOYMENTS_FILE``); ``CONTRACT_ADDRESS`` in ``.env`` is written on deploy and overrides
the record. Nothing here touches the network or the disk at import time.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, WrongChain
from .files import atomic_write_text
from . import networks
from .networks import DEV_CHAIN_IDS, LOCAL_RPC_URL, NETWORKS, Network  # noqa: F401  (re-exported)

DEFAULT_ENV_FILE = ".env"
DEFAULT_DEPLOYMENTS_FILE = "deployments.json"
DEFAULT_BIDS_FILE = "database/bids.json"
DEFAULT_RESULTS_FILE = "database/results.json"
DEFAULT_METER_FILE = "database/meter.json"
DEFAULT_STATE_DIR = "database"
DEFAULT_NETWORK = "dev"
# The named networks (local, Ethereum, Energy Web, Base, OP, Arbitrum, their testnets) live in
# ``networks``: their URLs, chain ids, PoA flags and fee models.

#: Every key read from .env / the environment (documented in .env.template).
KEYS = (
    "NETWORK", "RPC_URL", "WEB3_INFURA_PROJECT_ID", "CHAIN_ID", "CONTRACT_ADDRESS", "DEPLOYMENTS_FILE",
    "UTILITY_ACCOUNT", "UTILITY_ACCOUNT_PASS", "UTILITY_PRIVATE_KEY",
    "CONSUMER_ACCOUNT", "CONSUMER_ACCOUNT_PASS", "CONSUMER_PRIVATE_KEY", "KEYSTORE_DIR",
    "BIDS_FILE", "BIDS_SOURCE", "RESULTS_FILE", "METER_FILE", "STATE_DIR", "LOCK_DIR", "POLL_INTERVAL",
    "CONFIRMATIONS",
    "REORG_DEPTH", "START_BLOCK", "AUTO_WITHDRAW", "LOG_LEVEL", "RECEIPT_TIMEOUT",
    # operations (docs/production.md)
    "WS_URL", "LOG_FORMAT", "METRICS_PORT", "METRICS_HOST", "METRICS_TOKEN", "HEALTH_HEAD_MAX_AGE",
    "HEALTH_HEARTBEAT_MAX_AGE", "HEALTH_MAX_LAG_BLOCKS",
    "RECORDS_DIR",  # utility (wutility)
    "METER_DB", "BASELINE_METHOD", "BASELINE_TIMEZONE", "BASELINE_HOLIDAYS",  # utility and consumer
    "METER_ID", "REPORT_DELIVERY", "DELIVERY_TOLERANCE_KW", "DELIVERY_TOLERANCE_PCT",  # consumer (wconsumer)
    "VTN_PORT", "VTN_ID",  # utility (wutility)
    # consumer (wconsumer)
    "BID_MARGIN", "DEVICES_FILE", "VTN_URL", "USD_PER_ETH", "EUR_PER_ETH",
    "RELAY_LISTEN",  # utility: host:port where the daemon takes households' signed bids (relayer)
    "RELAY_ALLOW",  # utility: whose signed bids the relay pays for: a file of addresses, or "anyone"
    "RELAY_URL", "RELAY_FALLBACK_SECONDS",  # consumer: send signed open bids to the utility's relay
    "SETTLEMENT_TOKEN",  # utility: the ERC-20 its requests settle in (dr utility request, the dashboard's form)
    "SPONSOR_BOOK",  # utility: pay each new request's book slots' first writes (dr utility request / run)
)


def _short(address: str) -> str:
    """The first 8 hex digits of an address, lower case (for file names)."""
    return address[2:10].lower()


def default_meter_file(results_file: Path | str) -> Path:
    """Where the meter readings are when ``METER_FILE`` is not set: beside the results file."""
    return Path(results_file).with_name(Path(DEFAULT_METER_FILE).name)


def cursor_file(state_dir: Path | str, kind: str, chain_id: int, contract: str, account: str) -> Path:
    """A daemon's listener cursor: ``STATE_DIR/.cursor-KIND-CHAIN-CONTRACT-ACCOUNT.json``."""
    return Path(state_dir) / f".cursor-{kind}-{chain_id}-{_short(contract)}-{_short(account)}.json"


def salts_file(state_dir: Path | str, kind: str, chain_id: int, contract: str, account: str) -> Path:
    """A consumer's sealed-bid salts (mode 600): ``STATE_DIR/.salts-KIND-CHAIN-CONTRACT-ACCOUNT.json``."""
    return Path(state_dir) / f".salts-{kind}-{chain_id}-{_short(contract)}-{_short(account)}.json"


@dataclass(frozen=True)
class Settings:
    """Everything the daemons and commands need to know, already merged.

    Every state file's path comes from here: ``results_file``, ``meter_file``,
    ``cursor_file(...)``, ``salts_file(...)`` and ``lock_dir`` (the account locks).
    """

    network: str = DEFAULT_NETWORK
    rpc_url: str = LOCAL_RPC_URL
    expected_chain_id: int | None = None
    contract_address: str | None = None
    env_file: Path = Path(DEFAULT_ENV_FILE)
    deployments_file: Path = Path(DEFAULT_DEPLOYMENTS_FILE)
    bids_file: Path = Path(DEFAULT_BIDS_FILE)
    bids_source: str = "file"
    results_file: Path = Path(DEFAULT_RESULTS_FILE)
    meter_file: Path = Path(DEFAULT_METER_FILE)
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    #: Where the account locks live (``locks``); None: in ``state_dir``.
    lock_dir_override: Path | None = None
    poll_interval: float = 0.2
    confirmations: int = 0
    reorg_depth: int = 12
    start_block: int | None = None
    auto_withdraw: bool = True
    #: ``SPONSOR_BOOK``: the utility sponsors each new request's book (docs/gas.md).
    sponsor_book: bool = False
    receipt_timeout: float = 120.0
    log_level: str = "INFO"
    values: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        """A raw value from the merged .env + environment (e.g. account names)."""
        value = self.values.get(key)
        return value if value not in (None, "") else default

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def lock_dir(self) -> Path:
        """The folder of the account locks: ``LOCK_DIR``, else ``state_dir``."""
        return self.lock_dir_override if self.lock_dir_override is not None else self.state_dir

    @property
    def records_dir(self) -> Path:
        """Where published delivery records are stored (``mv.records``): ``RECORDS_DIR``, else
        ``state_dir/delivery-records``."""
        value = self.get("RECORDS_DIR")
        return Path(value) if value else self.state_dir / "delivery-records"

    def cursor_file(self, kind: str, chain_id: int, contract: str, account: str) -> Path:
        """The listener cursor of a daemon of ``kind`` (``consumer``, ``fleetN``, ``utility``)."""
        return cursor_file(self.state_dir, kind, chain_id, contract, account)

    def salts_file(self, kind: str, chain_id: int, contract: str, account: str) -> Path:
        """The sealed-bid salts of a consumer daemon of ``kind`` (``consumer``, ``fleetN``)."""
        return salts_file(self.state_dir, kind, chain_id, contract, account)


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _as_int(key: str, value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value), 0)
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not an integer; fix it in .env or the environment") from None


def _as_float(key: str, value: str | None, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a number; fix it in .env or the environment") from None
    if not number > 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")
    return number


def _as_bool(value: str | None, default: bool) -> bool:
    if value in (None, ""):
        return default
    return str(value).strip().lower() not in ("0", "false", "no", "off")


def network_url(name: str, values: Mapping[str, str]) -> str:
    """The RPC URL of network ``name`` (``RPC_URL`` is handled by the caller)."""
    network = NETWORKS.get(name)
    if network is None:
        known = ", ".join(sorted(NETWORKS))
        raise ConfigError(f"unknown network {name!r}; use one of {known}, or set RPC_URL for any other endpoint")
    return networks.network_url(network, values)


def expected_chain_id(network: str, chain_id_value: str | None) -> int | None:
    """The chain id the endpoint must report: ``CHAIN_ID`` if set, else the named network's
    (whatever URL is used: ``RPC_URL`` does not switch the check off). ``CHAIN_ID`` that
    contradicts a named network's id is a ``ConfigError``."""
    configured = _as_int("CHAIN_ID", chain_id_value)
    known = NETWORKS[network].chain_id if network in NETWORKS else None
    if configured is not None and known is not None and configured != known:
        raise ConfigError(f"CHAIN_ID={configured} contradicts network {network!r} (chain id {known}); "
                          "fix CHAIN_ID or --network / NETWORK")
    return configured if configured is not None else known


def check_chain_id(settings: "Settings", chain_id: int) -> None:
    """Raise ``WrongChain`` (one line) when the endpoint's ``chain_id`` is not the expected one."""
    expected = settings.expected_chain_id
    if expected is not None and int(chain_id) != expected:
        from .chain import redact_url

        other = networks.by_chain_id(int(chain_id))
        seen = f"{chain_id} ({other.description})" if other else str(chain_id)
        raise WrongChain(
            f"wrong chain: network {settings.network!r} expects chain id {expected} but "
            f"{redact_url(settings.rpc_url)} reports {seen}; fix --network / RPC_URL / CHAIN_ID"
        )


def load_settings(
    env_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **flags: Any,
) -> Settings:
    """Merge ``.env`` (``env_file``), the environment and ``flags`` (None values are ignored).

    Flags use the field names of ``Settings`` (``network``, ``rpc_url``, ``contract_address``...).
    """
    environ = os.environ if environ is None else environ
    env_path = Path(env_file or environ.get("DR_ENV_FILE") or DEFAULT_ENV_FILE)
    values: dict[str, str] = _read_env_file(env_path)
    values.update({k: v for k, v in environ.items() if k in KEYS})
    flags = {k: v for k, v in flags.items() if v is not None}

    network = flags.pop("network", None) or values.get("NETWORK") or DEFAULT_NETWORK
    explicit_url = flags.pop("rpc_url", None) or values.get("RPC_URL")
    rpc_url = explicit_url or network_url(network, values)
    expected = expected_chain_id(network, values.get("CHAIN_ID"))
    settings = Settings(
        network=network,
        rpc_url=rpc_url,
        expected_chain_id=expected,
        contract_address=values.get("CONTRACT_ADDRESS") or None,
        env_file=env_path,
        deployments_file=Path(values.get("DEPLOYMENTS_FILE") or DEFAULT_DEPLOYMENTS_FILE),
        bids_file=Path(values.get("BIDS_FILE") or DEFAULT_BIDS_FILE),
        bids_source=values.get("BIDS_SOURCE") or "file",
        results_file=Path(values.get("RESULTS_FILE") or DEFAULT_RESULTS_FILE),
        meter_file=Path(values["METER_FILE"]) if values.get("METER_FILE") else Path(DEFAULT_METER_FILE),
        state_dir=Path(values.get("STATE_DIR") or DEFAULT_STATE_DIR),
        lock_dir_override=Path(values["LOCK_DIR"]) if values.get("LOCK_DIR") else None,
        poll_interval=_as_float("POLL_INTERVAL", values.get("POLL_INTERVAL"), 0.2),
        confirmations=_as_int("CONFIRMATIONS", values.get("CONFIRMATIONS")) or 0,
        reorg_depth=_as_int("REORG_DEPTH", values.get("REORG_DEPTH")) or 12,
        start_block=_as_int("START_BLOCK", values.get("START_BLOCK")),
        auto_withdraw=_as_bool(values.get("AUTO_WITHDRAW"), True),
        sponsor_book=_as_bool(values.get("SPONSOR_BOOK"), False),
        receipt_timeout=_as_float("RECEIPT_TIMEOUT", values.get("RECEIPT_TIMEOUT"), 120.0),
        log_level=(values.get("LOG_LEVEL") or "INFO").upper(),
        values=values,
    )
    if "lock_dir" in flags:
        flags["lock_dir_override"] = flags.pop("lock_dir")
    for key in ("bids_file", "results_file", "meter_file", "state_dir", "lock_dir_override", "deployments_file"):
        if key in flags:
            flags[key] = Path(flags[key])
    settings = settings.with_(**flags) if flags else settings
    if not values.get("METER_FILE") and "meter_file" not in flags:
        settings = settings.with_(meter_file=default_meter_file(settings.results_file))
    return settings


# -- deployments --------------------------------------------------------------------------


def read_deployments(path: Path) -> dict[str, Any]:
    """The deployments record: ``{network: {chain_id: {address, block, tx, ...}}}``."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    return data if isinstance(data, dict) else {}


def record_deployment(settings: Settings, chain_id: int, address: str, block: int, tx_hash: str, **extra: Any) -> None:
    """Record ``address`` for (network, chain id) and write ``CONTRACT_ADDRESS`` into ``.env``."""
    path = settings.deployments_file
    data = read_deployments(path)
    entry = {"address": address, "chain_id": chain_id, "block": block, "tx": tx_hash,
             "rpc_host": _host(settings.rpc_url), "deployed_at": int(time.time()), **extra}
    data.setdefault(settings.network, {})[str(chain_id)] = entry
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    set_env_value(settings.env_file, "CONTRACT_ADDRESS", address)


def _host(url: str) -> str:
    from .chain import redact_url

    return redact_url(url)


def set_env_value(env_file: Path, key: str, value: str) -> None:
    """Set ``key=value`` in ``env_file`` atomically, keeping its other lines and its mode."""
    lines: list[str] = []
    mode = 0o600
    if env_file.is_file():
        lines = env_file.read_text(encoding="utf-8").splitlines()
        mode = env_file.stat().st_mode & 0o777
    out, done = [], False
    for line in lines:
        stripped = line.strip()
        name = stripped.removeprefix("export ").split("=", 1)[0].strip()
        if not stripped.startswith("#") and "=" in stripped and name == key:
            if not done:
                out.append(f"{key}={value}")
                done = True
            continue
        out.append(line)
    if not done:
        out.append(f"{key}={value}")
    if env_file.parent != Path(""):
        env_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(env_file, "\n".join(out) + "\n", mode=mode)
