"""The bid relay's pieces that need no chain: what the relay accepts as an entry (and the one
line it answers for anything else), its settings, the consumer's notes of a relayed entry,
and how a relayed record is shown."""

from __future__ import annotations

import json

import pytest
from eth_utils import to_checksum_address

from demand_response.cli.consumer import results_table
from demand_response.consumer.notes import RequestNote
from demand_response.consumer.records import result_record
from demand_response.consumer.relayed import DEFAULT_RELAY_FALLBACK_S, relay_fallback_seconds
from demand_response.errors import ConfigError
from demand_response.relayer import MAX_BODY_BYTES, RelayRefused, parse_entry, parse_listen, relay_allow
from demand_response.results import money, relayed_mark

BIDDER = "0x" + "ab" * 20
GOOD = {"requestId": 3, "bidder": BIDDER, "watts": [1000, 500], "pricesPerKWh": [10**14, "200000000000000"],
        "signature": "0x" + "11" * 65}


def _refusal(body: bytes) -> RelayRefused:
    with pytest.raises(RelayRefused) as caught:
        parse_entry(body)
    return caught.value


def test_a_well_formed_entry_is_read_with_its_bidder_checksummed_and_big_prices_as_strings() -> None:
    entry = parse_entry(json.dumps(GOOD).encode())
    assert entry.request_id == 3 and entry.bidder == to_checksum_address(BIDDER) != BIDDER
    assert entry.watts == (1000, 500) and entry.prices == (10**14, 2 * 10**14)
    assert entry.signature == b"\x11" * 65
    assert entry.struct == (entry.bidder, [1000, 500], [10**14, 2 * 10**14], b"\x11" * 65)


@pytest.mark.parametrize("body, words", [
    (b"\xff\xfe not json", "not JSON"),
    (b"{\"requestId\": 1", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "signature"}).encode(), "missing field(s): signature"),
    (json.dumps(dict(GOOD, bidder="0x1234")).encode(), "bidder must be"),
    (json.dumps(dict(GOOD, watts=[1])).encode(), "same length"),
    (json.dumps(dict(GOOD, watts=[], pricesPerKWh=[])).encode(), "non-empty"),
    (json.dumps(dict(GOOD, watts=[1] * 65, pricesPerKWh=[1] * 65)).encode(), "at most 64 bids"),
    (json.dumps(dict(GOOD, watts=[-1, 2])).encode(), "non-negative integers"),
    (json.dumps(dict(GOOD, watts=[True, 2])).encode(), "non-negative integers"),
    (json.dumps(dict(GOOD, pricesPerKWh=[1, 2**256])).encode(), "non-negative integers"),
    (json.dumps(dict(GOOD, requestId="x")).encode(), "requestId"),
    (json.dumps(dict(GOOD, signature="0x1234")).encode(), "65 bytes"),
    (json.dumps(dict(GOOD, signature="zz" * 65)).encode(), "65 bytes"),
])
def test_a_malformed_entry_is_refused_with_400_and_one_line_that_names_the_problem(body: bytes, words: str) -> None:
    refused = _refusal(body)
    assert refused.status == 400 and words in str(refused) and "\n" not in str(refused)


def test_the_body_limit_leaves_room_for_a_full_entry_of_64_bids() -> None:
    full = dict(GOOD, watts=[10**6] * 64, pricesPerKWh=[str(10**20)] * 64)
    assert len(json.dumps(full)) < MAX_BODY_BYTES
    assert len(parse_entry(json.dumps(full).encode()).watts) == 64


def test_relay_listen_takes_host_and_port_and_refuses_anything_else_in_one_line() -> None:
    assert parse_listen("127.0.0.1:8546") == ("127.0.0.1", 8546)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("localhost", "host:port", "1.2.3.4:70000"):
        with pytest.raises(ConfigError, match="RELAY_LISTEN"):
            parse_listen(bad)


def test_relay_fallback_seconds_defaults_to_20_and_refuses_what_is_not_a_number_of_seconds() -> None:
    assert relay_fallback_seconds(None) == relay_fallback_seconds("") == DEFAULT_RELAY_FALLBACK_S == 20
    assert relay_fallback_seconds("7.5") == 7.5 and relay_fallback_seconds("0") == 0
    for bad in ("soon", "-3", "nan"):
        with pytest.raises(ConfigError, match="RELAY_FALLBACK_SECONDS"):
            relay_fallback_seconds(bad)


def test_a_relayed_entry_in_the_notes_survives_a_restart() -> None:
    note = RequestNote(requested_block=5, offers=[[1000, 10**14]],
                       relay={"deadline": 1_700_000_000, "signature": "0x" + "22" * 65})
    again = RequestNote.from_json(json.loads(json.dumps(note.to_json())))
    assert again.relay == note.relay and again.relayed is False
    placed = RequestNote.from_json({"bid_txs": ["0xaa"], "relayed": True, "relay": "garbage"})
    assert placed.relayed is True and placed.relay is None and placed.gas_wei == 0


def test_a_relayed_record_costs_the_household_nothing_and_says_so_in_the_results_table() -> None:
    relayed = result_record(chain_id=31337, contract="0x" + "c" * 40, request_id=4, account=BIDDER, label="home",
                            status="won", accepted_watts=1000, payout_wei=10**15, bid_txs=["0x" + "ee" * 32],
                            relayed=True)
    own = result_record(chain_id=31337, contract="0x" + "c" * 40, request_id=5, account=BIDDER, label="home",
                        status="won", accepted_watts=1000, payout_wei=10**15, gas_wei=10**14)
    assert relayed["relayed"] is True and relayed["gas_wei"] == 0 and relayed["net_wei"] == 10**15
    assert "relayed" not in own and money(relayed).net == 10**15
    assert relayed_mark(relayed) == " (relayed)" and relayed_mark(own) == "" and relayed_mark(None) == ""
    lines = results_table([relayed, own], {})
    row = next(line for line in lines if line.startswith("4 "))
    assert "(relayed)" in row and "(relayed)" not in next(line for line in lines if line.startswith("5 "))
    assert any(line.startswith("relayed: the bids were placed by the utility's relay, which paid their gas")
               for line in lines)


def test_relay_allow_reads_a_file_of_addresses_or_anyone_and_refuses_an_open_door_by_default(tmp_path) -> None:
    listed = tmp_path / "allow.txt"
    listed.write_text(f"# households of feeder 7\n{BIDDER}  # consumer-1\n\n{'0x' + 'cd' * 20}\n")
    expected = frozenset({to_checksum_address(BIDDER), to_checksum_address("0x" + "cd" * 20)})
    assert relay_allow(f"@{listed}", registration_required=False) == expected
    assert relay_allow(str(listed), registration_required=False) == expected
    assert relay_allow("anyone", registration_required=False) is None
    # With enrolment the contract takes enrolled households only: the relay needs no list.
    assert relay_allow("", registration_required=True) is None
    # On an open market, no list would let anyone spend the utility's gas with throwaway keys.
    with pytest.raises(ConfigError, match="RELAY_ALLOW=anyone"):
        relay_allow(None, registration_required=False)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{BIDDER}\nconsumer-2\n")
    with pytest.raises(ConfigError, match="line 2: 'consumer-2' is not an address"):
        relay_allow(f"@{bad}", registration_required=False)
    with pytest.raises(ConfigError, match="cannot read"):
        relay_allow(f"@{tmp_path / 'missing.txt'}", registration_required=False)
