"""``dr consumer results``: per event paid, gas and net, with totals, from the results file."""

from __future__ import annotations

from pathlib import Path

from daemon_helpers import dr_env, run_dr
from demand_response.consumer import result_record
from demand_response.results import ResultsFile, money, totals

ACCOUNT = "0x" + "ab" * 20
CONTRACT = "0x" + "cd" * 20


def _record(rid: int, status: str, payout: int, gas: int, **extra: object) -> dict:
    return result_record(chain_id=31337, contract=CONTRACT, request_id=rid, account=ACCOUNT, label="home",
                         status=status, accepted_watts=2500 if payout else 0, payout_wei=payout, gas_wei=gas,
                         **extra)


def test_a_record_carries_paid_gas_and_net_in_wei() -> None:
    record = _record(1, "won", 10**16, 2 * 10**14)
    assert (record["paid_wei"], record["gas_wei"], record["net_wei"]) == (10**16, 2 * 10**14, 10**16 - 2 * 10**14)


def test_a_lost_event_earns_minus_its_gas_and_a_penalty_counts_against_net() -> None:
    assert _record(2, "lost", 0, 10**14)["net_wei"] == -10**14
    metered = _record(3, "won", 5 * 10**15, 10**14, paid_wei=4 * 10**15, penalty_wei=10**15)
    assert metered["net_wei"] == 4 * 10**15 - 10**15 - 10**14


def test_totals_skip_the_gas_of_records_written_before_gas_was_kept() -> None:
    old = {"request_id": 9, "payout_wei": 7, "status": "won"}
    assert money(old).gas is None and money(old).paid == 7
    t = totals([old, _record(1, "won", 100, 30)])
    assert (t.paid, t.gas, t.net) == (107, 30, 70)


def test_results_prints_a_row_per_event_and_totals_with_a_reference_rate(tmp_path: Path) -> None:
    results = ResultsFile(tmp_path / "results.json")
    results.append(_record(1, "won", 10**16, 2 * 10**14, clearing_price_wei_per_kwh=6 * 10**15))
    results.append(_record(2, "lost", 0, 10**14))
    out = run_dr(["consumer", "results", "--results-file", str(results.path)], tmp_path,
                 env=dr_env(USD_PER_ETH="3000"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["request", "who", "status"]
    row1 = next(line for line in lines if line.startswith("1 "))
    assert "2.5 kW" in row1 and "0.006 ETH/kWh" in row1
    assert "0.01 ETH (≈ $30.00)" in row1 and "0.0002 ETH (≈ $0.60)" in row1 and "0.0098 ETH (≈ $29.40)" in row1
    row2 = next(line for line in lines if line.startswith("2 "))
    assert "lost" in row2 and "-0.0001 ETH (≈ -$0.30)" in row2
    total = lines[-1]
    assert total.startswith("total") and "2 events" in total
    assert "0.0003 ETH (≈ $0.90)" in total and "0.0097 ETH (≈ $29.10)" in total


def test_results_with_no_file_says_there_are_none_yet(tmp_path: Path) -> None:
    out = run_dr(["consumer", "results", "--results-file", str(tmp_path / "none.json")], tmp_path)
    assert out.returncode == 0 and "no results yet" in out.stdout


def test_results_on_a_broken_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    out = run_dr(["consumer", "results", "--results-file", str(tmp_path / "results.json")], tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "is not valid JSON" in out.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly_not_as_a_lost_node(tmp_path: Path) -> None:
    """`dr consumer results | head -1`: the pipe closes while the table is written (one row per
    event, 2,000 events: past the pipe's buffer), which is no chain error."""
    import json
    import subprocess

    from daemon_helpers import PYTHON

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"version": 1, "results": [_record(rid, "won", 10**16, 2 * 10**14)
                                                          for rid in range(1, 2001)]}))
    reader = subprocess.Popen([PYTHON, "-m", "demand_response", "consumer", "results", "--results-file",
                               str(path)], cwd=tmp_path, env=dr_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    first = reader.stdout.readline()
    reader.stdout.close()  # as `head -1` does
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141
    assert first.split()[:3] == [b"request", b"who", b"status"]
    assert err == ""  # not "lost the RPC endpoint (BrokenPipeError)", no traceback
