"""Named network profiles: chain ids, PoA handling, fee models, the table config.py has today."""

from __future__ import annotations

import pytest

from demand_response import config, networks
from demand_response.networks import FeeModel, NetworkError
from demand_response.units import ETH


@pytest.mark.parametrize("name, chain_id, model", [
    ("ewc", 246, FeeModel.L1), ("volta", 73799, FeeModel.L1),
    ("base", 8453, FeeModel.OP_STACK), ("base-sepolia", 84532, FeeModel.OP_STACK),
    ("optimism", 10, FeeModel.OP_STACK), ("optimism-sepolia", 11155420, FeeModel.OP_STACK),
    ("arbitrum", 42161, FeeModel.ARBITRUM), ("arbitrum-sepolia", 421614, FeeModel.ARBITRUM),
    ("mainnet", 1, FeeModel.L1), ("sepolia", 11155111, FeeModel.L1),
])
def test_each_cheap_chain_has_its_chain_id_and_fee_model(name: str, chain_id: int, model: FeeModel) -> None:
    profile = networks.network(name)
    assert profile.chain_id == chain_id
    assert profile.fee_model is model
    assert profile.url.startswith("https://")
    assert profile.explorer.startswith("https://")


def test_the_local_and_infura_profiles_are_the_ones_config_has_today() -> None:
    for name, old in config.NETWORKS.items():
        new = networks.NETWORKS[name]
        assert (new.name, new.url, new.chain_id, new.description) == (old.name, old.url, old.chain_id, old.description)


def test_energy_web_chains_are_proof_of_authority_and_pay_gas_in_their_own_token() -> None:
    assert networks.network("ewc").poa and networks.network("ewc").native.symbol == "EWT"
    assert networks.network("volta").poa and networks.network("volta").native.symbol == "VT"
    assert networks.network("volta").testnet
    assert not networks.network("base").poa and networks.network("base").native is ETH


def test_an_unknown_network_name_lists_the_known_ones() -> None:
    with pytest.raises(NetworkError, match="unknown network 'bsae'.*base-sepolia.*RPC_URL"):
        networks.network("bsae")
    assert networks.network(" Base ").chain_id == 8453


def test_chain_ids_map_back_to_one_public_profile() -> None:
    ids = [n.chain_id for n in networks.NETWORKS.values() if not n.local]
    assert len(ids) == len(set(ids))
    assert networks.by_chain_id(246).name == "ewc"
    assert networks.by_chain_id(31337) is None


def test_poa_middleware_follows_the_profile_or_a_long_extra_data() -> None:
    aura_extra = "0x" + "de" * 31  # Aura keeps its seal elsewhere: extraData fits in 32 bytes
    clique_extra = "0x" + "00" * 97  # vanity + signature
    assert networks.needs_poa_middleware(networks.network("ewc"), aura_extra)
    assert not networks.needs_poa_middleware(networks.network("base"), aura_extra)
    assert networks.needs_poa_middleware(None, clique_extra)
    assert networks.needs_poa_middleware(networks.network("dev"), bytes(97))
    assert not networks.needs_poa_middleware(None, None)


def test_infura_urls_need_the_project_id_and_public_ones_do_not() -> None:
    assert networks.network_url(networks.network("base"), {}) == "https://mainnet.base.org"
    assert networks.network_url(networks.network("sepolia"), {"WEB3_INFURA_PROJECT_ID": "abc"}).endswith("/v3/abc")
    with pytest.raises(NetworkError, match="needs WEB3_INFURA_PROJECT_ID"):
        networks.network_url(networks.network("mainnet"), {})


def test_explorer_links_and_l1_data_fee_flags() -> None:
    base = networks.network("base")
    assert base.tx_url("0xabc") == "https://basescan.org/tx/0xabc"
    assert base.has_l1_data_fee and networks.network("arbitrum").has_l1_data_fee
    assert not networks.network("ewc").has_l1_data_fee
    assert networks.network("anvil").tx_url("0xabc") == ""
