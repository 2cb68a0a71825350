"""`dr utility status` shows every request's money in its own currency."""

from __future__ import annotations

from demand_response.cli.utility import format_status
from demand_response.units import ETH, currency


def _row(rid: int, cur, cap: int, promised: int, paid: int) -> dict:
    return {"id": rid, "state": "settled", "phase": "settled", "terms": "open", "rule": "uniform", "currency": cur,
            "target_watts": 8000, "bids": 4, "cap_wei_per_kwh": cap, "deadline": 0, "selected": True,
            "clearing_wei_per_kwh": cap // 2, "accepted_watts": 8000, "budget_wei": promised,
            "promised_wei": promised, "paid_wei": paid}


def test_a_token_request_is_shown_in_its_token_and_an_ether_one_in_ether() -> None:
    tusd = currency("TUSD")
    table = format_status([_row(1, ETH, 128 * 10**12, 2 * 10**15, 10**15), _row(2, tusd, 1_280_000, 9_469_000, 4_029_000)])
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:4]}
    assert rows["1"][5] == "ETH" and rows["1"][-2:] == ["0.002000", "0.001000"] and rows["1"][8] == "0.000128"
    assert rows["2"][5] == "TUSD" and rows["2"][-2:] == ["9.469000", "4.029000"] and rows["2"][8] == "1.280000"
