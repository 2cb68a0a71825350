"""``make demo`` / ``dr demo``: the whole market on an embedded local chain, in under a minute.

It starts ganache, deploys, starts several consumer daemons as separate processes (each
with its own dev account, passed in the environment, and its own bids file), posts a
request with a short bidding window, settles it at the deadline, waits for the winners
to claim and withdraw, prints a table and stops everything it started, on Ctrl-C too.

The default (sealed, metered) market also shows measurement and actuation:

* gridsim writes each consumer's 15-minute interval history into ``WORKDIR/meters.sqlite``;
  the event starts on a 15-minute boundary of chain time (17:00 in the homes' time zone),
  its readings show what gridsim says each winner delivered, and the utility daemon
  (``meter_db``) settles on the named baseline (``DEMO_METHOD``, caiso-10in10);
* the utility daemon drives an OpenADR 2.0b VTN on loopback; consumer-1's daemon is its VEN
  (``VTN_URL``): the award is dispatched to it, it opts in, and it reports its plug's power,
  which the VTN stores in the meter store as ``<address>@devices``;
* a Mosquitto broker carries consumer-1's water heater (a simulated Tasmota plug), shed at
  the event start and restored at its end, each command logged with its acknowledgement;
* the event lasts an hour of chain time: the demo moves the chain's clock to its start
  and then to its end (``evm_increaseTime``), and everything follows the chain's clock.

Everything it says goes to one stream, stdout (its own lines, the consumers' and the
in-process utility daemon's log lines), so ``make demo > log`` keeps the whole story. Its
records go to its own files in the work folder (``.demo/results.json``,
``.demo/meter.json``), never into a real consumer's ``database/results.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from . import devchain
from .bids import load_bids
from .chain import Signer, connect
from .config import load_settings
from .errors import DRError
from .market import TICKS, PricingRule
from .mv.commands import DEFAULT_METHOD
from .files import atomic_write_text
from .results import ResultsFile
from .planner import plan_request, preview, send_request
from .units import ETH as ETH_CURRENCY, WEI_PER_ETH as ETH, Currency, eth, format_amount, format_price, plain
from .utility import UtilityDaemon, deploy, outcome_line, start_vtn

CAP = TICKS * 10**14  # 0.0128 ETH per kWh: price step 0.0001 ETH/kWh
TARGET_KW = 8.0
#: The stablecoin market's cap: 1.28 TUSD per kWh (price step 0.01 TUSD/kWh). Its bids are the
#: ETH templates' at 10^-10 TUSD per wei (0.004 ETH/kWh becomes 0.40 TUSD/kWh): prices in the
#: range emergency demand-response programmes pay, enough to cover an L1-priced dev chain's gas.
TOKEN_CAP = CAP // 10**10
#: The reference rate the stablecoin demo's households use to weigh their gas (ETH) against
#: payouts in TUSD (``USD_PER_ETH``): the fee check and each record's net.
DEMO_USD_PER_ETH = "3000"
#: ``--market`` choices: a metered open market in the test stablecoin without a bond (each
#: household signs its bids and the utility's relay places them: it sends no transaction),
#: sealed metered bids in ETH with a bond, open bids in ETH (relayed as well).
MARKETS = ("usd", "sealed", "open")
#: Seconds before bidding closes at which a demo household whose relayed bids are not on chain
#: submits them itself (``RELAY_FALLBACK_SECONDS``; the demo's bidding window is 6 s).
DEMO_RELAY_FALLBACK_S = "2"

#: Per-consumer bids (cycled when there are more consumers). The last uses the seed's
#: legacy {"energy": kW, "price": wei/kWh} format and has one offer above the cap.
_TEMPLATES: list[dict[str, Any]] = [
    {"version": 1, "source": "demo", "bids": [{"kw": 2.0, "price_wei_per_kwh": 40 * 10**14},
                                              {"kw": 1.5, "price_wei_per_kwh": 60 * 10**14}]},
    {"version": 1, "source": "demo", "bids": [{"watts": 3000, "price_wei_per_kwh": 50 * 10**14}]},
    {"version": 1, "source": "demo", "bids": [{"kw": 2.5, "price_wei_per_kwh": 30 * 10**14},
                                              {"kw": 2.0, "price_wei_per_kwh": 90 * 10**14}]},
    {"energy": [1.0, 1.2], "price": [150 * 10**14, 72 * 10**14]},
]


#: The demo's own files, inside its work folder.
RESULTS_NAME, METER_NAME = "results.json", "meter.json"


#: Libraries whose INFO lines would drown the demo's story.
_CHATTY = ("openleadr", "apscheduler", "aiohttp.access", "aiohttp.server")


@contextlib.contextmanager
def _log_to_stdout() -> Iterator[None]:
    """Send the package's log lines (the in-process utility daemon's) to stdout, where the
    demo prints everything else, for the length of the demo."""
    root = logging.getLogger()
    moved = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and h.stream is sys.stderr]
    added = None
    if not moved and not root.handlers:
        added = logging.StreamHandler(sys.stdout)
        added.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
        root.addHandler(added)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            logging.getLogger("demand_response").setLevel(logging.INFO)
    for handler in moved:
        handler.setStream(sys.stdout)
    # OpenLEADR logs every poll and message, its scheduler every job, aiohttp every request:
    # the demo shows its own lines about the VTN and the VEN instead.
    quiet = {name: logging.getLogger(name).level for name in _CHATTY}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        for handler in moved:
            handler.setStream(sys.stderr)
        if added is not None:
            root.removeHandler(added)


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} demo: {message}", flush=True)


def _bids_for(i: int, currency: Currency = ETH_CURRENCY) -> dict[str, Any]:
    doc = json.loads(json.dumps(_TEMPLATES[i % len(_TEMPLATES)]))
    bump = (i // len(_TEMPLATES)) * 3 * 10**14  # later rounds a little dearer
    if bump:
        for bid in doc.get("bids", []):
            bid["price_wei_per_kwh"] += bump
        if "price" in doc:
            doc["price"] = [p + bump for p in doc["price"]]
    if currency == ETH_CURRENCY:
        return doc
    # The stablecoin market: the same offers, priced in the token per kWh (``bids.json``'s currency).
    pairs = ([(b.get("kw", b.get("watts", 0) / 1000), b["price_wei_per_kwh"]) for b in doc["bids"]] if "bids" in doc
             else list(zip(doc["energy"], doc["price"])))
    return {"version": 1, "source": "demo", "currency": currency.symbol,
            "bids": [{"kw": kw, "price": plain(wei * TOKEN_CAP // CAP, currency)} for kw, wei in pairs]}


class _Consumer:
    """A consumer daemon subprocess whose output is echoed with a prefix."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], lines: "queue.Queue[tuple[str, str]]") -> None:
        self.name = name
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True,
        )
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        self._thread.start()

    def _pump(self, lines: "queue.Queue[tuple[str, str]]") -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if "listening for requests" in line:
                self.ready.set()
            print(f"  [{self.name}] {line}", flush=True)
            lines.put((self.name, line))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (a clean shutdown), then SIGKILL the group if it does not stop."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._thread.join(timeout=2)


def _delivery_table(records: list[dict[str, Any]], names: dict[str, str], bids: dict[str, str]) -> str:
    header = (f"{'consumer':<11} {'bids (kW @ ETH/kWh)':<34} {'promised kW':>11} {'delivered kW':>12} "
              f"{'promised ETH':>12} {'paid ETH':>10} {'penalty ETH':>11} {'withdrawn':>9}")
    lines = [header, "-" * len(header)]
    for record in sorted(records, key=lambda r: names.get(r["account"], r["account"])):
        name = names.get(record["account"], record["account"][:10])
        lines.append(
            f"{name:<11} {bids.get(name, ''):<34} {record['accepted_kw']:>11.3f} "
            f"{record.get('delivered_watts', 0) / 1000:>12.3f} {record.get('promised_payout_wei', 0) / ETH:>12.6f} "
            f"{record['payout_wei'] / ETH:>10.6f} {record.get('penalty_wei', 0) / ETH:>11.6f} "
            f"{'yes' if record.get('withdraw_tx') else '-':>9}"
        )
    return "\n".join(lines)


def _token_delivery_table(records: list[dict[str, Any]], names: dict[str, str], bids: dict[str, str],
                          cur: Currency) -> str:
    """The stablecoin market's per-winner delivery: promised against delivered against paid (in ``cur``)."""
    sym = cur.symbol
    header = (f"{'consumer':<11} {'bids (kW @ ' + sym + '/kWh)':<34} {'promised kW':>11} {'delivered kW':>12} "
              f"{'promised ' + sym:>13} {'paid ' + sym:>9}")
    lines = [header, "-" * len(header)]
    for record in sorted(records, key=lambda r: names.get(r["account"], r["account"])):
        name = names.get(record["account"], record["account"][:10])
        lines.append(
            f"{name:<11} {bids.get(name, ''):<34} {record['accepted_kw']:>11.3f} "
            f"{record.get('delivered_watts', 0) / 1000:>12.3f} "
            f"{plain(int(record.get('promised_payout_units', 0)), cur):>13} "
            f"{plain(int(record.get('paid_units', 0)), cur):>9}")
    return "\n".join(lines)


def money_table(records: list[dict[str, Any]], names: dict[str, str], txs: dict[str, int]) -> str:
    """Per household: what it was paid (gross, in the request's currency), what its
    transactions cost (gas, in ETH; and in the request's currency through the reference
    rate), its net, and how many transactions it sent (``txs``) during the demo."""
    from .results import money

    header = f"{'household':<11} {'gross':>14} {'gas':>28} {'net':>14} {'transactions':>12}"
    lines = [header, "-" * len(header)]
    by_address = {r["account"]: r for r in records}
    for address in sorted(names, key=lambda a: names[a]):
        record = by_address.get(address)
        if record is None:
            lines.append(f"{names[address]:<11} {'no bid recorded':>14} {'':>28} {'':>14} {txs.get(address, 0):>12}")
            continue
        m = money(record)
        gas = format_amount(m.gas_wei, ETH_CURRENCY)
        if m.currency != ETH_CURRENCY and m.gas is not None:
            gas += f" ({format_amount(m.gas, m.currency)})"
        net = format_amount(m.net, m.currency) if m.net is not None else "unknown (no rate)"
        lines.append(f"{names[address]:<11} {format_amount(m.paid, m.currency):>14} {gas:>28} {net:>14} "
                     f"{txs.get(address, 0):>12}")
    return "\n".join(lines)


def relay_line(w3: Any, batches: list[Any]) -> str:
    """What the relay's batches placed and what their gas cost the utility (in ETH)."""
    if not batches:
        return "relay: no batch was sent (every household submitted its own signed bids)"
    receipts = [w3.eth.get_transaction_receipt(b.tx) for b in batches]
    fee = sum(int(r["gasUsed"]) * int(r.get("effectiveGasPrice") or 0) for r in receipts)
    gas = sum(b.gas for b in batches)
    entries = sum(b.entries for b in batches)
    return (f"relay: {len(batches)} transaction(s) placed {sum(b.placed for b in batches)} household(s)' bids "
            f"({sum(b.skipped for b in batches)} skipped): {gas:,} gas, {gas // max(1, entries):,} per household, "
            f"{format_amount(fee, ETH_CURRENCY)}, paid by the utility")


def _request_in_token(dr: Any, utility: Signer, token: str, cur: Currency, deadline: int,
                      event_start: int) -> tuple[int, dict[str, Any]]:
    """Post the stablecoin market's request: metered (report and dispute windows), no bond,
    the budget of the full target at ``TOKEN_CAP`` escrowed in ``token`` (approved first)."""
    from .contract import Terms
    from .market import required_budget

    watts = int(TARGET_KW * 1000)
    budget = required_budget(watts, 3600, TOKEN_CAP)
    _say(f"Request: {TARGET_KW:.3f} kW for 1.00 h from {time.strftime('%H:%M:%S', time.localtime(event_start))}, "
         f"bidding closes {time.strftime('%H:%M:%S', time.localtime(deadline))}, uniform pricing, open bids, no bond")
    _say(f"Price cap {format_price(TOKEN_CAP, cur)}; budget escrowed {format_amount(budget, cur)} (approve, then "
         "requestReductionInToken); paid on delivery the utility meters from interval data, the rest refunded")
    return dr.request_reduction(utility, watts, event_start, event_start + 3600, deadline, TOKEN_CAP,
                                PricingRule.UNIFORM, budget=budget,
                                terms=Terms(report_window=REPORT_WINDOW, dispute_window=DISPUTE_WINDOW), token=token)


def _table(records: list[dict[str, Any]], names: dict[str, str], bids: dict[str, str]) -> str:
    header = f"{'consumer':<11} {'account':<12} {'bids (kW @ ETH/kWh)':<34} {'won kW':>7} {'clearing':>9} {'paid ETH':>10} {'withdrawn':>10}"
    lines = [header, "-" * len(header)]
    for record in sorted(records, key=lambda r: names.get(r["account"], r["account"])):
        name = names.get(record["account"], record["account"][:10])
        lines.append(
            f"{name:<11} {record['account'][:10] + '…':<12} {bids.get(name, ''):<34} "
            f"{record['accepted_kw']:>7.3f} {record['clearing_price_wei_per_kwh'] / ETH:>9.4f} "
            f"{record['payout_wei'] / ETH:>10.6f} {'yes' if record.get('withdraw_tx') else '-':>10}"
        )
    return "\n".join(lines)


#: Sealed, metered demo: reveal window, report window, dispute window (s) and bond.
REVEAL_WINDOW, REPORT_WINDOW, DISPUTE_WINDOW, BOND = 10, 60, 30, 10**15
#: gridsim homes per demo consumer, and the consumer whose homes only partly comply.
HOMES_PER_CONSUMER, UNDER_DELIVERY = 3, 0.4
#: Seconds between the end of the reveals and the start of the event (the winners' notice).
NOTICE = 60


#: gridsim's fixed summer day (2026-11-21 00:00 UTC; the model's weather is a summer day).
_MODEL_DAY = 1_795_219_200


def _demo_homes(count: int) -> tuple[Any, Any, list[list[int]]]:
    """The seeded population, its homes' offers (W) and each demo consumer's homes (in name
    order): the ``HOMES_PER_CONSUMER`` most flexible homes each, for a 1 h evening request."""
    import numpy as np

    from .gridsim import as_request, fleet_bids, make_population

    pop = make_population(200, seed=0)
    req = {"event_start": _MODEL_DAY + 17 * 3600, "event_end": _MODEL_DAY + 18 * 3600, "max_price_wei_per_kwh": CAP}
    offers = fleet_bids(pop, as_request(req)).watts.sum(axis=1)
    order = [int(i) for i in np.argsort(-offers, kind="stable")]
    return pop, offers, [order[k * HOMES_PER_CONSUMER:(k + 1) * HOMES_PER_CONSUMER] for k in range(count)]


def gridsim_deliveries(accepted: dict[str, int], names: dict[str, str], duration_s: int) -> dict[str, int]:
    """What each winner truly delivers, decided by gridsim.

    Each demo consumer stands for a block of ``HOMES_PER_CONSUMER`` simulated homes (the
    most flexible ones of a seeded population, on a fixed summer day from 17:00 UTC, so
    the demo is the same at any hour). Its accepted watts are split over its homes in
    proportion to their offers, each home is simulated through the event, and the block
    delivers the sum. The last winner by name complies only in part (``UNDER_DELIVERY``).
    """
    from .gridsim import simulate_delivery

    ordered = sorted(accepted, key=lambda a: names.get(a, a))
    pop, offers, blocks = _demo_homes(len(ordered))
    req = {"event_start": _MODEL_DAY + 17 * 3600, "event_end": _MODEL_DAY + 17 * 3600 + duration_s,
           "max_price_wei_per_kwh": CAP}
    winners = [a for a in ordered if accepted[a]]
    out = {}
    for account, homes in zip(ordered, blocks):
        want = accepted[account]
        if not want:
            continue
        partial = UNDER_DELIVERY if account == winners[-1] else 0.0
        total_offer = float(sum(offers[h] for h in homes)) or 1.0
        delivered = 0.0
        for h in homes:
            share = int(round(want * float(offers[h]) / total_offer))
            delivered += simulate_delivery(pop, req, h, share, under_delivery=partial).delivered_w
        out[account] = int(delivered)
    return out


#: The meters' interval (s), the days of history before the event day, and the named
#: baseline the demo settles on (docs/mv.md says why caiso-10in10).
INTERVAL_S, HISTORY_DAYS = 900, 21
DEMO_METHOD = DEFAULT_METHOD
#: The demo's households: far quieter than gridsim's defaults (docs/mv.md measures those:
#: a single home's baseline is off by about ±50 %), so a 3-home block's baseline lands
#: within about 10 % of what gridsim says it delivered and the table can be read. Real
#: data is noisier: settle on portfolios.
_QUIET = dict(day_sd=0.01, interval_sd=0.02, hvac_day_sd=0.01, weather_sd_c=0.3, ev_plug_p=1.0)


def event_window(earliest: int, duration_s: int = 3600) -> tuple[int, int]:
    """The first ``INTERVAL_S`` boundary at or after ``earliest``, and the end: an event the
    meters' 15-minute intervals cover exactly (baselines settle on interval boundaries)."""
    start = -(-earliest // INTERVAL_S) * INTERVAL_S
    return start, start + duration_s


def local_offset_s(event_start: int) -> int:
    """The UTC offset (within ±12 h) at which ``event_start`` is 17:00 local: the demo's
    households live where the event falls on their evening peak, whatever the hour."""
    return (17 * 3600 - event_start % 86400 + 12 * 3600) % 86400 - 12 * 3600


def meter_histories(accounts: list[str], event_start: int, event_end: int) -> dict[str, list[tuple[int, int, int]]]:
    """Each account's counterfactual interval readings ``(start, seconds, Wh)``: gridsim's
    history of its block of homes (summed: one meter per consumer) from local midnight
    ``HISTORY_DAYS`` days before the event day up to ``event_end``, with no event in it."""
    from .gridsim.history import simulate_history

    pop, _, blocks = _demo_homes(len(accounts))
    homes = sorted({h for block in blocks for h in block})
    offset = local_offset_s(event_start)
    history = simulate_history(pop.subset(homes), HISTORY_DAYS + 1, event_start - HISTORY_DAYS * 86400, seed=1,
                               interval_s=INTERVAL_S, utc_offset_hours=offset / 3600, **_QUIET)
    keep = history.starts < event_end
    starts = history.starts[keep].tolist()
    out = {}
    for account, block in zip(accounts, blocks):
        rows = history.wh[[homes.index(h) for h in block]][:, keep].sum(axis=0).tolist()
        out[account] = [(t, INTERVAL_S, int(w)) for t, w in zip(starts, rows)]
    return out


def with_reduction(readings: list[tuple[int, int, int]], event_start: int, event_end: int,
                   watts: int) -> list[tuple[int, int, int]]:
    """``readings`` with ``watts`` shed evenly over the event's intervals: an interval sheds
    at most what it draws (an exporting interval, negative with solar, is left as it is)."""
    out = []
    for start, seconds, wh in readings:
        if event_start <= start < event_end:
            wh -= min(round(watts * seconds / 3600), max(wh, 0))
        out.append((start, seconds, wh))
    return out


#: The demo's files for measurement, devices and OpenADR, inside its work folder.
METERS_NAME, VTN_NAME = "meters.sqlite", "vtn.sqlite"
#: consumer-1's one device: a Tasmota plug on a 3 kW water heater.
PLUG_TOPIC, PLUG_W = "water_heater", 3000


class _DeviceRig:
    """A Mosquitto broker on loopback and consumer-1's simulated Tasmota plug, with the
    devices file that names it (``DEVICES_FILE``). ``start`` returns None, after one line,
    when mosquitto is not installed."""

    def __init__(self, folder: Path, broker: Any, plug: Any, devices_file: Path, command_log: Path) -> None:
        self.folder, self.broker, self.plug = folder, broker, plug
        self.devices_file, self.command_log = devices_file, command_log

    @classmethod
    def start(cls, folder: Path) -> "_DeviceRig | None":
        from .devices.peers import Mosquitto, SimTasmota

        try:
            broker = Mosquitto(folder / "mosquitto").start()
        except (OSError, TimeoutError) as exc:  # not installed (FileNotFoundError), or it did not listen
            _say(f"devices: skipped: {exc}; the rest of the demo runs without a device")
            return None
        plug = SimTasmota(broker.port, PLUG_TOPIC, load_w=PLUG_W)
        if not plug.ready.wait(10):
            plug.close()
            broker.stop()
            _say("devices: skipped: the simulated plug did not reach the broker; the rest of the demo runs")
            return None
        folder.mkdir(parents=True, exist_ok=True)
        command_log = folder / "device-commands.jsonl"
        data = {
            "revert_margin_s": 300, "timeout_s": 5, "command_log": str(command_log),
            "state_file": str(folder / "devices-state.json"),
            "brokers": {"home": {"host": "127.0.0.1", "port": broker.port, "client_id": "dr-consumer-1"}},
            "devices": [{"name": "water-heater", "kind": "tasmota", "broker": "home", "topic": PLUG_TOPIC,
                         "shed_w": PLUG_W, "priority": 1}],
        }
        devices_file = folder / "devices.json"
        atomic_write_text(devices_file, json.dumps(data, indent=1) + "\n")
        _say(f"devices: Mosquitto on 127.0.0.1:{broker.port}; consumer-1's water heater ({PLUG_W / 1000:g} kW) is a "
             f"Tasmota plug on it; devices file {devices_file}")
        return cls(folder, broker, plug, devices_file, command_log)

    def records(self) -> list[dict[str, Any]]:
        """The command log so far."""
        from .devices.log import CommandLog

        return list(CommandLog(self.command_log).records()) if self.command_log.exists() else []

    def wait_for(self, command: str, timeout: float) -> dict[str, Any] | None:
        """The first acknowledged ``command`` (shed, restore) in the log, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if record.get("command") == command and record.get("ok"):
                    return record
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        self.plug.close()
        self.broker.stop()


#: The demo VTN's telemetry interval (s): consumer-1's daemon reports its plug's power this often.
TELEMETRY_S = 5


class _OpenAdr:
    """The utility's OpenADR 2.0b VTN on loopback, feeding VEN telemetry into the meter store;
    consumer-1's VEN runs in its own daemon (``VTN_URL``). ``start`` returns None, after one
    line, without the ``openadr`` extra."""

    def __init__(self, vtn: Any) -> None:
        self.vtn = vtn

    @classmethod
    def start(cls, dr: Any, store: Path, meter_db: Path) -> "_OpenAdr | None":
        import importlib.util

        if importlib.util.find_spec("openleadr") is None:
            _say("openadr: skipped: OpenLEADR is missing (pip install '.[openadr]'); awards go by chain only")
            return None
        import openleadr  # noqa: F401  (its client module sets its logger to INFO on import)

        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
        from .devices.peers import free_port

        try:
            vtn = start_vtn(dr, store, port=free_port(), poll_interval=1, meter_db=meter_db,
                            report_interval=TELEMETRY_S)
        except DRError as exc:
            _say(f"openadr: skipped: {exc}; awards go by chain only")
            return None
        _say(f"openadr: the utility's VTN listens at {vtn.url}; consumer-1's daemon is its VEN (VTN_URL) and reports "
             f"its devices' power every {TELEMETRY_S} s (the others hear their awards on chain)")
        return cls(vtn)

    def environ(self) -> dict[str, str]:
        """What makes a consumer daemon a VEN of this VTN."""
        return {"VTN_URL": self.vtn.url, "VTN_ID": self.vtn.vtn_id}

    def wait_answer(self, address: str, request_id: int, timeout: float) -> tuple[Any, str | None]:
        """``address``'s dispatch event for ``request_id`` and its VEN's answer (optIn/optOut)
        once the VTN has recorded it; (the event or None, None) after ``timeout``."""
        deadline, event = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            event = next((e for e in self.vtn.store.events(request_id, kind="dispatch") if e.address == address), None)
            if event is not None and event.opt:
                return event, str(event.opt)
            time.sleep(0.1)
        return event, None

    def telemetry_line(self, address: str, meter_db: Path) -> str:
        """What ``address``'s VEN reported and what the VTN stored (after the VTN stopped)."""
        from .consumer.service import VEN_RESOURCE

        meter = f"{address}@{VEN_RESOURCE}"
        feed = self.vtn.on_telemetry
        samples, stored = feed.samples.get(meter, 0), feed.stored.get(meter, 0)
        return (f"OpenADR telemetry: consumer-1's daemon reported {samples} power sample(s) (W, every {TELEMETRY_S} s) "
                f"to the VTN; {stored} interval reading(s) (Wh per {feed.interval_s // 60} min) stored in {meter_db} "
                f"as meter {meter[:10]}…@{VEN_RESOURCE}")

    def stop(self) -> None:
        """Stop the VTN (the utility daemon stops it at its exit: a no-op then)."""
        self.vtn.stop()


def run_demo(
    consumers: int = 4,
    results_file: Path | None = None,
    workdir: Path = Path(".demo"),
    bidding_window: int = 6,
    chain_kind: str = "ganache",
    market: str = "usd",
) -> int:
    """Run the demo; returns the exit status. ``market`` is ``usd`` (open bids in the test
    stablecoin TUSD, no bond, paid on delivery the utility meters from interval data; the
    households sign their bids and the utility's relay places them: they send no transaction),
    ``sealed`` (``sealed-metered``: sealed bids in ETH with a
    bond, paid on metered delivery) or ``open`` (open bids in ETH, paid on acceptance).
    ``results_file`` defaults to ``WORKDIR/results.json``: demo records never mix with real ones."""
    with _log_to_stdout():
        return _run_demo(consumers, Path(results_file) if results_file is not None else Path(workdir) / RESULTS_NAME,
                         Path(workdir), bidding_window, chain_kind, market)


def _run_demo(consumers: int, results_file: Path, workdir: Path, bidding_window: int, chain_kind: str,
              market: str) -> int:
    market = "sealed" if market == "sealed-metered" else market
    if market not in MARKETS:
        raise ValueError(f"market must be one of {', '.join(MARKETS)}")
    metered, sealed, in_token = market != "open", market == "sealed", market == "usd"
    started = time.monotonic()
    if consumers < 1:
        raise ValueError("the demo needs at least one consumer")
    workdir.mkdir(parents=True, exist_ok=True)
    # Every run starts a new chain: cursors, notes, salts, meter data, OpenADR registrations
    # and delivery records of an earlier run describe a chain that is gone (and its
    # deterministic addresses would be mistaken for this one's).
    for stale in [*workdir.glob("consumer-*"), *workdir.glob(".cursor-*"), *workdir.glob(".salts-*"),
                  *workdir.glob(METERS_NAME + "*"), *workdir.glob(VTN_NAME + "*"), workdir / "delivery-records",
                  workdir / "devices"]:
        if stale.exists():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    results = ResultsFile(results_file)
    procs: list[_Consumer] = []
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    rig: _DeviceRig | None = None
    openadr: _OpenAdr | None = None
    relay: Any = None
    _say(f"starting an embedded {chain_kind} with {consumers + 1} accounts")
    chain = devchain.start(chain_kind, accounts=consumers + 1, log_path=workdir / f"{chain_kind}.log")
    try:
        keys = devchain.dev_private_keys(consumers + 1, chain_kind)
        settings = load_settings(
            workdir / "demo.env", environ={}, network="dev", rpc_url=chain.url,
            deployments_file=workdir / "deployments.json", state_dir=workdir, results_file=results_file,
            meter_file=results_file.with_name(METER_NAME),
        )
        w3 = connect(chain.url)
        utility = Signer.from_key(w3, keys[0], label="utility")
        dr = deploy(settings, utility, chain.chain_id)
        start_block = w3.eth.block_number
        from .sealed import drop_readings

        # An earlier demo deployed at this same address on its own (now gone) chain: its
        # results and meter readings would be taken for this run's.
        dropped = results.forget_deployment(chain.chain_id, dr.address)
        drop_readings(settings.meter_file, chain.chain_id, dr.address)
        if dropped:
            _say(f"dropped {dropped} result(s) of an earlier demo at the same address from {results_file}")
        _say(f"deployed DemandReduction at {dr.address} (chain {chain.chain_id}, block {start_block})")
        cur: Currency = ETH_CURRENCY
        token: str | None = None
        cap = CAP
        if in_token:
            from .market import required_budget
            from .token import deploy_test_usd, mint_test_usd

            usd = deploy_test_usd(utility)
            token, cur, cap = usd.address, usd.currency(), TOKEN_CAP
            budget = required_budget(int(TARGET_KW * 1000), 3600, cap)
            mint_test_usd(utility, token, utility.address, budget)
            _say(f"deployed the test stablecoin {cur.symbol} ({cur.decimals} decimals) at {token} and minted the "
                 f"utility {format_amount(budget, cur)}; the market settles in it, gas is paid in ETH "
                 f"(households weigh it at USD_PER_ETH={DEMO_USD_PER_ETH})")
            start_block = w3.eth.block_number

        if metered:
            rig = _DeviceRig.start(workdir / "devices")
            openadr = _OpenAdr.start(dr, workdir / VTN_NAME, workdir / METERS_NAME)
        if not sealed:  # open bids without a bond: the households sign them, the utility places them
            from .relayer import RELAY_PATH, start_relay

            # The relay pays for the demo's own households only (RELAY_ALLOW: their addresses).
            households = frozenset(Signer.from_key(w3, key).address for key in keys[1:])
            relay = start_relay(dr, utility.address, "127.0.0.1:0", chain.chain_id, allow=households)
            _say(f"relay: the utility takes its {len(households)} households' signed bids at {relay.url}{RELAY_PATH} "
                 "(RELAY_URL, RELAY_ALLOW) and places them in batches, paying the gas: the households send no "
                 "transaction")
        names: dict[str, str] = {}
        offered: dict[str, str] = {}
        nonces: dict[str, int] = {}  # each household's transactions before the demo: the table counts the rest
        env_base = {k: v for k, v in os.environ.items()
                    if k not in ("CHAIN_ID", "RPC_URL", "CONTRACT_ADDRESS", "CONSUMER_ACCOUNT", "NETWORK",
                                 "DEVICES_FILE", "VTN_URL", "VTN_ID")}
        env_base["PYTHONUNBUFFERED"] = "1"
        root = str(devchain.PROJECT_ROOT)
        env_base["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        for i in range(consumers):
            name = f"consumer-{i + 1}"
            folder = workdir / name
            folder.mkdir(exist_ok=True)
            bids_path = folder / "bids.json"
            bids_path.write_text(json.dumps(_bids_for(i, cur), indent=2) + "\n", encoding="utf-8")
            offers = load_bids(bids_path).bids
            offered[name] = ", ".join(f"{o.watts / 1000:g}@{o.price / cur.one:.4f}" for o in offers)
            address = Signer.from_key(w3, keys[i + 1]).address
            names[address] = name
            nonces[address] = w3.eth.get_transaction_count(address)
            env = dict(env_base, CONSUMER_PRIVATE_KEY=keys[i + 1], DR_ENV_FILE=str(workdir / "demo.env"))
            args = [
                sys.executable, "-m", "demand_response", "consumer", "run",
                "--rpc-url", chain.url, "--contract", dr.address, "--label", name,
                "--bids-file", str(bids_path), "--results-file", str(results_file),
                "--state-dir", str(folder), "--from-block", str(start_block),
                "--deployments-file", str(workdir / "deployments.json"),
            ]
            env["METER_FILE"] = str(settings.meter_file)
            if in_token:
                env["USD_PER_ETH"] = DEMO_USD_PER_ETH
            if rig is not None and i == 0:  # consumer-1's daemon drives its plug, on the chain's clock
                env["DEVICES_FILE"] = str(rig.devices_file)
            if openadr is not None and i == 0:  # and is the VTN's VEN: dispatch, opt-in, telemetry
                env.update(openadr.environ())
            if metered:  # each consumer rechecks the utility's published figure from the meter data
                env["METER_DB"] = str(workdir / METERS_NAME)
            if relay is not None:
                env.update(RELAY_URL=relay.url, RELAY_FALLBACK_SECONDS=DEMO_RELAY_FALLBACK_S)
            procs.append(_Consumer(name, args, env, lines))
            _say(f"started {name} (pid {procs[-1].process.pid}, account {address[:10]}…) bidding {offered[name]}")
        if rig is not None:
            _say(f"devices: consumer-1's daemon drives the plug (DEVICES_FILE={rig.devices_file}); its actuator "
                 "runs on the chain's clock, so it follows the demo's fast-forwarded event")

        deadline = time.monotonic() + 40
        for proc in procs:
            if not proc.ready.wait(max(0.1, deadline - time.monotonic())):
                raise RuntimeError(f"{proc.name} did not start listening; see its output above")
        _say("all consumers are listening")

        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        # The event starts at least a minute after the reveals close (winners selected after
        # the event started would owe no shortfall penalty: they could not have planned for
        # it), on the meters' 15-minute boundary, so the baseline covers it interval by interval.
        event_start, event_end = event_window(now + bidding_window + (REVEAL_WINDOW if sealed else 0) + NOTICE)
        if in_token:
            rid, receipt = _request_in_token(dr, utility, token, cur, now + bidding_window, event_start)
        else:
            terms = dict(reveal_window_s=REVEAL_WINDOW, report_window_s=REPORT_WINDOW, dispute_window_s=DISPUTE_WINDOW,
                         bond_wei=BOND, event_start=event_start) if metered else {}
            plan = plan_request(target_kw=TARGET_KW, now=now, bidding_window_s=bidding_window,
                                event_duration_s=3600, max_price_wei_per_kwh=CAP, rule=PricingRule.UNIFORM, **terms)
            for line in preview(plan).splitlines():
                _say(line)
            rid, receipt = send_request(dr, utility, plan)
        _say(f"utility posted request {rid} in block {receipt['blockNumber']}; bidding closes in {bidding_window} s")

        meter_db = workdir / METERS_NAME
        histories: dict[str, list[tuple[int, int, int]]] = {}
        if metered:
            info0 = dr.get_request(rid)
            accounts = sorted(names, key=lambda a: names[a])
            histories = meter_histories(accounts, info0.event_start, info0.event_end)
            from .mv import MeterStore

            with MeterStore.open(meter_db) as store:
                stored = store.import_batches({a: [r for r in rows if r[0] < info0.event_start]
                                               for a, rows in histories.items()})
            _say(f"meters: {stored} readings ({HISTORY_DAYS} days of 15-minute data per consumer, gridsim's "
                 f"households, the event hour at 17:00 local) in {meter_db}; the utility settles on {DEMO_METHOD}")

        daemon = UtilityDaemon(
            dr, utility, state_path=settings.cursor_file("utility", chain.chain_id, dr.address, utility.address),
            chain_id=chain.chain_id, lock_dir=settings.lock_dir,
            start_block=start_block, poll_interval=0.25, only={rid}, exit_when_idle=True,
            relay=relay.relay if relay is not None else None,
            **(dict(meter_db=str(meter_db), baseline=DEMO_METHOD, records_dir=workdir / "delivery-records",
                    vtn=openadr.vtn if openadr is not None else None) if metered else {}),
        )
        stop = threading.Event()
        daemon_thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        daemon_thread.start()
        settle_by = time.monotonic() + bidding_window + (REVEAL_WINDOW if sealed else 0) + 30
        while not daemon.settled and daemon_thread.is_alive() and time.monotonic() < settle_by:
            time.sleep(0.1)
        if not daemon.settled:
            stop.set()
            raise RuntimeError("the utility did not settle the request")
        info = daemon.settled[-1]
        _say(outcome_line(info, cur))
        delivered: dict[str, int] = {}
        dispatch_line = shed_line = restore_line = ""
        if metered:
            accepted = {}
            for b in dr.all_bids(rid):
                accepted[b.bidder] = accepted.get(b.bidder, 0) + b.accepted_watts
            first = next(iter(sorted(names, key=lambda a: names[a])))
            if openadr is not None:  # the utility daemon announced the request and dispatched the award
                heard, opt = openadr.wait_answer(first, rid, 15)
                for event in openadr.vtn.store.events(rid, kind="dispatch"):
                    dispatch_line = (f"VTN dispatched request {rid} to {names.get(event.address, event.address)}: "
                                     f"LOAD_DISPATCH -{event.watts / 1000:.3f} kW over the event window, "
                                     f"event {event.event_id[:12]}…")
                    _say("openadr: " + dispatch_line)
                if heard is not None:
                    if opt:
                        _say(f"openadr: consumer-1's VEN heard the dispatch in its daemon ({heard.watts / 1000:.3f} kW "
                             f"from {time.strftime('%H:%M', time.gmtime(heard.start))} to "
                             f"{time.strftime('%H:%M', time.gmtime(heard.end))} UTC, market context {heard.context})")
                    _say(f"openadr: the VTN recorded consumer-1's answer: {opt or 'none yet'}")
                    dispatch_line += f"; consumer-1's VEN answered {opt or 'nothing yet'}"
            delivered = gridsim_deliveries(accepted, names, info.duration)
            for a, w in sorted(delivered.items(), key=lambda x: names.get(x[0], x[0])):
                _say(f"gridsim: {names.get(a, a)} truly delivers {w / 1000:.3f} kW of {accepted[a] / 1000:.3f} kW "
                     "accepted; its meter will show it")
            ahead = info.event_start - int(w3.eth.get_block("latest")["timestamp"])
            _say(f"fast-forwarding the chain's clock {max(0, ahead)} s to the event start "
                 f"({time.strftime('%H:%M', time.gmtime(info.event_start))} UTC chain time): the event lasts 1 h "
                 "on the meters' 15-minute intervals, so the demo moves the chain's time (evm_increaseTime) to its "
                 "start and its end, and the daemons and the device follow the chain's clock")
            if ahead > 0:
                chain.rpc("evm_increaseTime", [ahead])
            chain.rpc("evm_mine", [])
            if rig is not None and accepted.get(first):
                shed = rig.wait_for("shed", 20)
                shed_line = "shed at the event start: " + ("acknowledged by the plug" if shed else "NOT SEEN")
                _say(f"devices: consumer-1's water heater is {'off' if not rig.plug.on else 'still on'} ({shed_line})")
            # The meters' readings of the event hour, and each consumer's own figure from them
            # with the named baseline (what its daemon reports on chain).
            event_rows = {a: with_reduction(rows, info.event_start, info.event_end, delivered.get(a, 0))
                          for a, rows in histories.items()}
            from .mv import MeterStore, compute
            from .sealed import write_readings

            with MeterStore.open(meter_db) as store:
                store.import_batches({a: [r for r in rows if r[0] >= info.event_start]
                                      for a, rows in event_rows.items()})
            own = {a: compute(DEMO_METHOD, event_rows[a], info.event_start, info.event_end, holidays=[])
                   for a in delivered}
            write_readings(settings.meter_file, [
                {"chain_id": chain.chain_id, "contract": dr.address, "request_id": rid, "account": a,
                 "delivered_watts": r.delivered_watts} for a, r in own.items()])
            ahead = info.event_end - int(w3.eth.get_block("latest")["timestamp"]) + 1
            _say(f"meters: the event hour's readings are in {meter_db}; fast-forwarding the chain's clock {ahead} s "
                 "to the end of the 1 h event")
            chain.rpc("evm_increaseTime", [ahead])
            chain.rpc("evm_mine", [])
            if rig is not None and accepted.get(first):
                restore = rig.wait_for("restore", 20)
                restore_line = "restored at the event end: " + ("acknowledged by the plug" if restore else "NOT SEEN")
                _say(f"devices: consumer-1's water heater is {'on' if rig.plug.on else 'still off'} ({restore_line})")
        daemon_thread.join(timeout=REPORT_WINDOW + DISPUTE_WINDOW + 30 if metered else 5)
        stop.set()

        bidders = {b.bidder for b in dr.get_bids(rid)}
        if metered:  # a consumer that committed and did not reveal records its lost bond too
            from .contract import Stage

            bidders |= {a for a in names if dr.participant_of(rid, a).stage != Stage.NONE}
        wait_until = time.monotonic() + 30
        while time.monotonic() < wait_until:
            done = [a for a in bidders if results.find(chain.chain_id, dr.address, rid, a)]
            if len(done) == len(bidders):
                break
            time.sleep(0.2)
        for proc in procs:
            proc.stop()
        procs = []
        records = [r for r in results.records()
                   if r.get("contract", "").lower() == dr.address.lower() and r.get("request_id") == rid]
        print()
        print(f"Request {rid}: target {info.target_watts / 1000:.3f} kW, cap {format_price(cap, cur)}, "
              f"1 h event, {info.rule.name.lower()} pricing, {info.bid_count} bids"
              + (f", settled in {cur.symbol} ({token})" if in_token else ""))
        if in_token:
            print(_token_delivery_table(records, names, offered, cur))
            paid = sum(int(r.get("paid_units", 0)) for r in records)
            print(f"accepted {info.accepted_watts / 1000:.3f} kW of {info.target_watts / 1000:.3f} kW at "
                  f"{format_price(info.clearing_price, cur)}; paid {format_amount(paid, cur)}; refund to the utility "
                  f"{format_amount(info.budget - info.reserved, cur)}, plus "
                  f"{format_amount(info.reserved - paid, cur)} unearned pay")
        else:
            print(_table(records, names, offered) if not metered else _delivery_table(records, names, offered))
            print(f"accepted {info.accepted_watts / 1000:.3f} kW of {info.target_watts / 1000:.3f} kW at "
                  f"{info.clearing_price / ETH:.4f} ETH/kWh; paid {sum(r['payout_wei'] for r in records) / ETH:.6f} ETH; "
                  f"refund to the utility {eth(info.budget - info.reserved)} ETH"
                  + (f", plus {eth(sum(r.get('promised_payout_wei', 0) - r['payout_wei'] + r.get('penalty_wei', 0) for r in records))}"
                     " ETH unearned pay and penalties" if metered else ""))
        print()
        print(money_table(records, names, {a: w3.eth.get_transaction_count(a) - nonces.get(a, 0) for a in names}))
        if relay is not None:
            print(relay_line(w3, relay.relay.batches))
        if metered:
            print()
            print(_measured_table(daemon.judged, names, delivered))
            print(f"measured by the utility from {meter_db} with {DEMO_METHOD}; each record (method, parameters, "
                  f"data hash, per-interval series) is in {workdir / 'delivery-records'}")
            print(_household_check(daemon.judged, names, meter_db))
            print()
            print(_devices_section(rig, dispatch_line, openadr is not None))
            if openadr is not None:
                print(openadr.telemetry_line(first, meter_db) if rig is not None
                      else "OpenADR telemetry: not run (consumer-1 has no devices without mosquitto)")
        missing = len(bidders) - len(records)
        if missing:
            print(f"warning: {missing} bidder(s) did not record a result in time")
        print(f"results appended to {results_file}; demo finished in {time.monotonic() - started:.1f} s")
        return 0 if not missing else 1
    finally:
        for proc in procs:
            proc.stop()
        if relay is not None:
            relay.close()
        for part in (openadr, rig):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        chain.stop()


def _measured_table(judged: list[dict[str, Any]], names: dict[str, str], true_w: dict[str, int]) -> str:
    """Per winner: the baseline and metered energy over the event, the delivery they give,
    what gridsim says was truly delivered, the method, the data hash and the verdict."""
    header = (f"{'consumer':<11} {'baseline kWh':>12} {'metered kWh':>11} {'delivered kW':>12} {'true kW':>8} "
              f"{'method':<13} {'data hash':<14} {'verdict':<9}")
    lines = [header, "-" * len(header)]
    by_address = {a.lower(): a for a in names}
    for record in sorted(judged, key=lambda r: names.get(by_address.get(r["address"].lower(), ""), r["address"])):
        address = by_address.get(record["address"].lower(), record["address"])
        lines.append(
            f"{names.get(address, address[:10]):<11} {record['baseline_wh'] / 1000:>12.3f} "
            f"{record['metered_wh'] / 1000:>11.3f} {record['delivered_watts'] / 1000:>12.3f} "
            f"{true_w.get(address, 0) / 1000:>8.3f} {record['method']:<13} {record['data_hash'][:12] + '…':<14} "
            f"{record.get('verdict') or '-':<9}")
    if not judged:
        lines.append("(no delivery was measured from the interval data; see the utility's lines above)")
    return "\n".join(lines)


def _household_check(judged: list[dict[str, Any]], names: dict[str, str], meter_db: Path) -> str:
    """The first winner rechecks its published figure from the meter data (``dr meter check``)."""
    from .mv.commands import check_command

    if not judged:
        return "no record to check"
    record = min(judged, key=lambda r: next((n for a, n in names.items() if a.lower() == r["address"].lower()), ""))
    name = next((n for a, n in names.items() if a.lower() == record["address"].lower()), record["address"][:10])
    try:
        check = check_command(meter_db, json.dumps(record["fingerprint"]))
    except DRError as exc:
        return f"{name} could not check its figure: {exc}"
    return f"{name} rechecks its record from its own meter data (dr meter check RECORD --db {meter_db}): {check['message']}"


def _devices_section(rig: _DeviceRig | None, dispatch_line: str, openadr: bool) -> str:
    """The VTN's dispatch and consumer-1's device command log (shed, restore, acknowledgements)."""
    from .devices.log import describe

    out = ["OpenADR: " + (dispatch_line or ("no dispatch event was sent" if openadr else "not run (no OpenLEADR)"))]
    if rig is None:
        out.append("devices: not run (no mosquitto; make system-deps installs it)")
        return "\n".join(out)
    out.append(f"consumer-1's device command log ({rig.command_log}):")
    out.extend("  " + describe(record) for record in rig.records())
    return "\n".join(out)
