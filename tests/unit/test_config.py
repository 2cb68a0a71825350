"""Settings: a named network always checks its chain id (issue 14, bug 7), and every state
file path comes from the settings object."""

from __future__ import annotations

from pathlib import Path

import pytest

from demand_response.config import check_chain_id, load_settings
from demand_response.errors import ConfigError, WrongChain


@pytest.mark.parametrize("network, chain_id", [("sepolia", 11155111), ("mainnet", 1), ("anvil", 31337),
                                               ("ganache", 1337)])
def test_a_named_network_keeps_its_chain_id_check_when_rpc_url_is_set(tmp_path: Path, network: str,
                                                                        chain_id: int) -> None:
    settings = load_settings(tmp_path / ".env", environ={"RPC_URL": "http://127.0.0.1:8545"}, network=network)
    assert settings.rpc_url == "http://127.0.0.1:8545" and settings.expected_chain_id == chain_id


def test_the_network_named_in_the_env_file_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NETWORK=sepolia\nRPC_URL=https://rpc.example/KEY\n")
    assert load_settings(tmp_path / ".env", environ={}).expected_chain_id == 11155111


def test_an_unnamed_network_with_rpc_url_expects_no_particular_chain(tmp_path: Path) -> None:
    assert load_settings(tmp_path / ".env", environ={"RPC_URL": "http://127.0.0.1:8545"}).expected_chain_id is None


def test_chain_id_that_contradicts_the_named_network_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^CHAIN_ID=5 contradicts network 'sepolia' \(chain id 11155111\)"):
        load_settings(tmp_path / ".env", environ={"CHAIN_ID": "5", "RPC_URL": "http://x"}, network="sepolia")


def test_chain_id_alone_sets_the_expected_chain(tmp_path: Path) -> None:
    assert load_settings(tmp_path / ".env", environ={"CHAIN_ID": "77", "RPC_URL": "http://x"}).expected_chain_id == 77


def test_the_wrong_chain_is_named_with_the_fix_and_without_the_url_secret(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / ".env", environ={"RPC_URL": "https://node.example/v3/SECRET"},
                             network="mainnet")
    check_chain_id(settings, 1)
    with pytest.raises(WrongChain) as caught:
        check_chain_id(settings, 11155111)
    message = str(caught.value)
    assert message.startswith("wrong chain: network 'mainnet' expects chain id 1 but https://node.example/…")
    assert "reports 11155111 (Sepolia" in message  # the chain it really is, named when it is a known one
    assert "SECRET" not in message and "\n" not in message


def test_every_state_file_path_comes_from_the_settings(tmp_path: Path) -> None:
    contract, account = "0x" + "ab" * 20, "0x" + "CD" * 20
    settings = load_settings(tmp_path / ".env", environ={"STATE_DIR": str(tmp_path / "st")},
                             results_file=tmp_path / "db" / "results.json")
    assert settings.cursor_file("consumer", 1337, contract, account) == \
        tmp_path / "st" / ".cursor-consumer-1337-abababab-cdcdcdcd.json"
    assert settings.salts_file("fleet3", 1337, contract, account) == \
        tmp_path / "st" / ".salts-fleet3-1337-abababab-cdcdcdcd.json"
    assert settings.meter_file == tmp_path / "db" / "meter.json"  # default: beside the results
    assert settings.lock_dir == tmp_path / "st"


def test_meter_file_and_lock_dir_can_be_set_on_their_own(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / ".env", environ={"METER_FILE": "/srv/meter.json", "LOCK_DIR": "/run/dr"})
    assert settings.meter_file == Path("/srv/meter.json") and settings.lock_dir == Path("/run/dr")
    assert load_settings(tmp_path / ".env", environ={}, lock_dir="/tmp/x").lock_dir == Path("/tmp/x")
