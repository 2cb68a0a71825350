"""No secret in any output (issue 7, daemon half).

* ``dr demo`` (what ``make demo`` runs) end to end, every line it prints and every file it
  leaves (chain log, consumer cursors, results, deployments, env): none contains a dev
  private key, with or without ``0x``.
* A consumer daemon unlocked from a keystore, with ``-v`` and ``--log-file``, and the
  ``dr accounts`` commands: neither the password nor the key appears anywhere.
* ``.gitignore`` covers ``.env``, keystores and the runtime state.

Keystore files being mode 600 is tested in test_cli.py (``test_accounts_new_import_list_and_wrong_password``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from daemon_helpers import ROOT, Daemon, dr_env, run_dr
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction

PASSWORD = "s3cret-Horse-battery-7"


def _needles(keys: list[str]) -> list[str]:
    out = []
    for key in keys:
        bare = key.removeprefix("0x").lower()
        out += [bare, bare.upper(), bare[:24]]  # a key cut short in a log line still leaks
    return out


def _scan(folder: Path, texts: dict[str, str], needles: list[str]) -> int:
    for path in folder.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    for where, text in texts.items():
        low = text.lower()
        for needle in needles:
            assert needle.lower() not in low, f"a secret ({needle[:6]}…) appears in {where}"
    return len(texts)


def test_demo_outputs_and_files_contain_no_private_key(tmp_path: Path) -> None:
    results = tmp_path / "database" / "results.json"
    done = run_dr(["demo", "--consumers", "2", "--chain", "anvil", "--bidding-window", "3", "--workdir", str(tmp_path / "demo"),
                   "--results-file", str(results)], tmp_path, timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "request 1: winners selected" in done.stdout
    keys = devchain.dev_private_keys(3, "anvil")
    node_log = tmp_path / "demo" / "anvil.log"
    # The node's own log is the one exception: a dev node prints its deterministic, public
    # test keys (the well-known mnemonic) at start; nothing of ours passes a key to it.
    node_log.unlink()
    scanned = _scan(tmp_path, {"stdout": done.stdout, "stderr": done.stderr}, _needles(keys))
    assert scanned >= 6  # stdout, stderr, results, deployments, bids, cursors


def test_keystore_daemon_and_accounts_commands_never_show_password_or_key(tmp_path: Path) -> None:
    keys = devchain.dev_private_keys(3, "anvil")
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "key").write_text(keys[2])
    env = dr_env(KEYSTORE_DIR=str(tmp_path / "keys"))
    outputs = {}
    done = run_dr(["accounts", "import", "home", "--password-file", "pw", "--key-file", "key"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    outputs["import"] = done.stdout + done.stderr
    done = run_dr(["accounts", "list"], tmp_path, env)
    outputs["list"] = done.stdout + done.stderr
    chain = devchain.start("anvil", accounts=3, log_path=tmp_path / "anvil.log")
    try:
        dr = DemandReduction.deploy(Signer(connect(chain.url), connect(chain.url).eth.accounts[0]))
        (tmp_path / "bids.json").write_text('{"version": 1, "bids": [{"watts": 1000, "price_wei_per_kwh": 1000}]}')
        (tmp_path / ".env").write_text(f"RPC_URL={chain.url}\nCONTRACT_ADDRESS={dr.address}\nCONSUMER_ACCOUNT=home\n"
                                       f"CONSUMER_ACCOUNT_PASS={PASSWORD}\nKEYSTORE_DIR={tmp_path / 'keys'}\n")
        daemon = Daemon(["consumer", "run", "-v", "--log-file", str(tmp_path / "daemon.log"), "--bids-file", "bids.json",
                         "--results-file", "results.json", "--state-dir", "state"], tmp_path, tmp_path / "out.log",
                        env=dr_env())
        try:
            daemon.wait_for("listening for requests")
        finally:
            assert daemon.stop() == 0
    finally:
        chain.stop()
    from eth_account import Account

    assert Account.from_key(keys[2]).address[:10] in (tmp_path / "out.log").read_text()  # the keystore's account
    secret_files = {tmp_path / ".env", tmp_path / "pw", tmp_path / "key"}
    keystore = next((tmp_path / "keys").glob("*.json"))
    texts = dict(outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path not in secret_files:
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    assert str(keystore) in texts  # the keystore is scanned too: it holds the key encrypted only
    for where, text in texts.items():
        for needle in [PASSWORD, *_needles([keys[2]])]:
            assert needle.lower() not in text.lower(), f"a secret appears in {where}"


def test_gitignore_covers_env_keystores_and_state() -> None:
    paths = [".env", "keystores/home.json", "consumer.keystore", ".brownie/accounts/utility.json",
             "database/results.json", "database/.cursor-consumer-1337-x.json", "database/.results.json.lock",
             "deployments.json", ".demo/consumer-1/bids.json", "database/.salts-1337-5fbdb231-70997970.json",
             "database/meter.json"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    ignored = set(done.stdout.split())
    assert ignored == set(paths), f"not ignored: {sorted(set(paths) - ignored)}"
    tracked = subprocess.run(["git", "ls-files", ".env", "*.keystore", "keystores", ".brownie"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert tracked == []
