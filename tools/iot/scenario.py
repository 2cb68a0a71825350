"""One market cycle with a consumer daemon that runs somewhere else (a light venv, an arm64 root).

The chain (ganache), the deployment, the request and the settlement run natively, in this
process; only the consumer daemon is started with the command prefix you give, e.g.

    python tools/iot/scenario.py --work /tmp/w -- /tmp/light/bin/dr
    python tools/iot/scenario.py --work ROOT/srv/dr-iot --guest-dir /srv/dr-iot \\
        -- chroot --userspec=dr:dr ROOT /opt/demand-response/.venv/bin/dr

The prefix must end in something that accepts ``dr`` arguments (``.../bin/dr`` or
``python -m demand_response``). ``--work`` is where the bids, results and state files live as
seen from here; ``--guest-dir`` is the same folder as the consumer sees it (inside a chroot).

The cycle: start ganache, deploy, write the consumer's bids, start the consumer and wait for
"listening for requests", post a 1 kW request, wait for the consumer's bid, settle at the
deadline, wait until the consumer has claimed, withdrawn and written ``results.json``, stop
it with SIGTERM. It prints one line per step with its time, and a JSON summary (timings,
the consumer's peak RSS, its result record). Exit status 0 only if the consumer bid, won and
recorded its result. Used by ``tests/tooling/test_iot.py`` and ``tools/iot/check.sh`` (make iot-check).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demand_response import devchain  # noqa: E402
from demand_response.bids import save_bids  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction, Status  # noqa: E402
from demand_response.planner import plan_request, send_request  # noqa: E402

CAP = 128 * 10**14  # 0.0128 ETH/kWh price cap (tick 0.0001 ETH/kWh)
OFFER_WATTS, OFFER_PRICE = 1500, 30 * 10**14  # the consumer offers 1.5 kW at 0.003 ETH/kWh
TARGET_KW = 1.0  # so it wins 1 kW of its 1.5 kW (the marginal bid, accepted in part)


class ScenarioError(RuntimeError):
    """A step of the cycle did not happen in time; the message says which and why."""


def _say(message: str) -> None:
    print(f"[iot {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _wait(predicate: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None,
          log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise ScenarioError(f"the consumer exited ({proc.returncode}) while waiting for {what}:\n{tail}")
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise ScenarioError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def _memory(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS in kB of the largest process in ``pid``'s process group.

    The group, because a wrapper (runuser, sudo) may have forked the daemon; under qemu-user
    the figure is the emulator's, guest memory plus translated code.
    """
    best: dict[str, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            stat = (status.parent / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pid:  # field 5: process group
                continue
            fields = {}
            for line in status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    fields[key] = int(value.split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if fields.get("VmHWM", 0) > best.get("VmHWM", 0):
            best = fields
    return best


def run_cycle(
    consumer_prefix: Sequence[str],
    work: Path,
    guest_dir: str | None = None,
    *,
    bidding_window: int = 10,
    poll_interval: float = 1.0,
    startup_timeout: float = 120.0,
    step_timeout: float = 120.0,
    env: dict[str, str] | None = None,
    keystore: bool = False,
) -> dict[str, Any]:
    """Run the cycle; return a summary dict (raises ``ScenarioError`` when a step fails).

    The consumer signs as the chain's account #1: with ``--account-index 1`` (the node's
    unlocked account), or, with ``keystore=True``, with a keystore it already holds for that
    account's key (``devchain.dev_private_keys``), as a board does.
    """
    work.mkdir(parents=True, exist_ok=True)
    guest = guest_dir or str(work)
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def mark(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 2)
        return now

    node = devchain.start("ganache", accounts=4, log_path=work / "ganache.log")
    consumer: subprocess.Popen | None = None
    log = work / "consumer.log"
    try:
        t = mark("chain_start_s", t0)
        w3 = connect(node.url)
        utility = Signer(w3, w3.eth.accounts[0])
        me = w3.eth.accounts[1]
        dr = DemandReduction.deploy(utility)
        start_block = w3.eth.block_number
        t = mark("deploy_s", t)
        _say(f"ganache {node.url} (chain {node.chain_id}); DemandReduction at {dr.address}")

        for name in ("results.json", "consumer.log"):
            (work / name).unlink(missing_ok=True)
        (work / "state").mkdir(exist_ok=True)
        for cursor in (work / "state").glob(".cursor-*"):
            cursor.unlink()
        save_bids(work / "bids.json", [(OFFER_WATTS, OFFER_PRICE)])
        argv = [*consumer_prefix, "consumer", "run", "--rpc-url", node.url, "--contract", dr.address,
                *([] if keystore else ["--account-index", "1"]), "--bids-file", f"{guest}/bids.json",
                "--results-file", f"{guest}/results.json", "--state-dir", f"{guest}/state",
                "--from-block", str(start_block), "--poll-interval", str(poll_interval), "--label", "iot-consumer"]
        shown = [a.split("=", 1)[0] + "=***" if a.split("=", 1)[0].endswith(("_PASS", "_KEY")) else a for a in argv]
        _say("starting the consumer: " + " ".join(shown))
        with open(log, "ab") as handle:
            consumer = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env=env)
        t_started = time.monotonic()

        def text() -> str:
            return log.read_text(errors="replace")

        _wait(lambda: "listening for requests" in text(), startup_timeout, "'listening for requests'", consumer, log)
        t = mark("consumer_startup_s", t_started)
        idle_memory = _memory(consumer.pid)
        _say(f"consumer listening after {timings['consumer_startup_s']} s (RSS {idle_memory.get('VmRSS', '?')} kB)")

        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        plan = plan_request(target_kw=TARGET_KW, now=now, bidding_window_s=bidding_window, event_duration_s=3600,
                            max_price_wei_per_kwh=CAP)
        rid, _ = send_request(dr, utility, plan)
        t_request = time.monotonic()
        _say(f"utility posted request {rid}: {TARGET_KW} kW, bidding closes in {bidding_window} s")
        _wait(lambda: f"on request {rid} (tx" in text(), bidding_window + 5, f"the consumer's bid on request {rid}",
              consumer, log)
        mark("request_to_bid_s", t_request)
        bids = [b for b in dr.get_bids(rid) if b.bidder == me]
        if not bids:
            raise ScenarioError(f"the consumer logged a bid but the contract has none from {me}")
        _say(f"consumer bid after {timings['request_to_bid_s']} s: {[(b.watts, b.price) for b in bids]}")

        deadline = dr.get_request(rid).bidding_deadline
        _wait(lambda: time.time() > deadline + 1, bidding_window + 30, "the bidding deadline")
        node.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        t_settled = time.monotonic()
        info = dr.get_request(rid)
        if info.status != Status.SETTLED:
            raise ScenarioError(f"request {rid} is {info.status.name} after selectWinners")
        _say(f"utility settled request {rid}: {info.accepted_watts} W accepted at {info.clearing_price} wei/kWh")

        def record() -> dict[str, Any] | None:
            try:
                rows = json.loads((work / "results.json").read_text())
            except (OSError, ValueError):
                return None
            rows = rows.get("results", rows) if isinstance(rows, dict) else rows
            mine = [r for r in rows if r.get("request_id") == rid and r.get("withdraw_tx")]
            return mine[0] if mine else None

        result = _wait(record, step_timeout, "the consumer's record in results.json", consumer, log)
        mark("settle_to_record_s", t_settled)
        peak = _memory(consumer.pid)
        _say(f"consumer recorded its result after {timings['settle_to_record_s']} s: "
             f"{result['accepted_watts']} W won, {result['payout_wei']} wei paid and withdrawn")

        t_stop = time.monotonic()
        os.killpg(consumer.pid, signal.SIGTERM)
        try:
            code = consumer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise ScenarioError("the consumer did not stop within 60 s of SIGTERM") from None
        mark("stop_s", t_stop)
        if code != 0:
            raise ScenarioError(f"the consumer exited with {code} on SIGTERM:\n{text()[-2000:]}")
        if dr.owed(me) != 0 or result["accepted_watts"] <= 0 or result["payout_wei"] <= 0:
            raise ScenarioError(f"unexpected outcome: owed {dr.owed(me)}, record {result}")
        timings["total_s"] = round(time.monotonic() - t0, 2)
        return {
            "timings": timings,
            "consumer_idle_kb": idle_memory,
            "consumer_peak_kb": peak,
            "bids": [{"watts": b.watts, "price_wei_per_kwh": b.price} for b in bids],
            "result": result,
            "consumer_log": str(log),
        }
    finally:
        if consumer is not None and consumer.poll() is None:
            try:
                os.killpg(consumer.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            consumer.wait(timeout=10)
        node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="folder for bids, results, state and logs (host path)")
    parser.add_argument("--guest-dir", help="the same folder as the consumer sees it (default: --work)")
    parser.add_argument("--bidding-window", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--keystore", action="store_true",
                        help="the consumer has its own keystore for dev account #1 (no --account-index)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("prefix", nargs="+", help="command that runs `dr` for the consumer (after --)")
    args = parser.parse_args(argv)
    try:
        summary = run_cycle(args.prefix, args.work.resolve(), args.guest_dir, bidding_window=args.bidding_window,
                            poll_interval=args.poll_interval, startup_timeout=args.startup_timeout,
                            keystore=args.keystore)
    except (ScenarioError, devchain.DevChainError) as exc:
        print(f"iot scenario FAILED: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
