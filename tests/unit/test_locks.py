"""One lock per account (``demand_response.locks``), across real processes; no chain."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon_helpers import ROOT, wait_until
from demand_response.errors import AccountBusy
from demand_response.locks import AccountLocks, holder

ACCOUNT = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


def test_a_held_lock_names_this_process_and_its_daemon_kind(tmp_path: Path) -> None:
    import os

    with AccountLocks(tmp_path, 1337, [ACCOUNT], "consumer run"):
        found = holder(tmp_path, 1337, ACCOUNT)
        assert found is not None and found.pid == os.getpid() and found.daemon == "consumer run"
    assert holder(tmp_path, 1337, ACCOUNT) is None


def test_a_second_daemon_for_the_same_account_is_refused_in_one_line(tmp_path: Path) -> None:
    with AccountLocks(tmp_path, 1337, [ACCOUNT], "web console"):
        with pytest.raises(AccountBusy) as caught:
            AccountLocks(tmp_path, 1337, [ACCOUNT.upper().replace("0X", "0x")], "consumer run").acquire()
    assert "web console" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.pid is not None


def test_the_same_account_on_another_chain_or_another_account_is_free(tmp_path: Path) -> None:
    with AccountLocks(tmp_path, 1337, [ACCOUNT], "consumer run"):
        with AccountLocks(tmp_path, 31337, [ACCOUNT], "consumer run"), AccountLocks(tmp_path, 1337, [OTHER], "x"):
            pass


def test_a_fleet_that_meets_one_busy_account_holds_none_of_the_others(tmp_path: Path) -> None:
    with AccountLocks(tmp_path, 1337, [OTHER], "consumer run"):
        fleet = AccountLocks(tmp_path, 1337, [ACCOUNT, OTHER], "consumer fleet of 2")
        with pytest.raises(AccountBusy):
            fleet.acquire()
        assert not fleet.held and holder(tmp_path, 1337, ACCOUNT) is None


def test_a_lock_held_by_another_process_is_seen_and_freed_when_that_process_dies(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from demand_response.locks import AccountLocks
        locks = AccountLocks({str(tmp_path)!r}, 1337, [{ACCOUNT!r}], "consumer fleet of 3").acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        found = holder(tmp_path, 1337, ACCOUNT)
        assert found is not None and found.pid == process.pid and found.daemon == "consumer fleet of 3"
        with pytest.raises(AccountBusy, match=f"pid {process.pid}"):
            AccountLocks(tmp_path, 1337, [ACCOUNT], "consumer run").acquire()
    finally:
        process.kill()  # no clean-up: the kernel frees the lock
        process.wait(timeout=10)
    wait_until(lambda: holder(tmp_path, 1337, ACCOUNT) is None, timeout=10, what="the lock to be freed")
    AccountLocks(tmp_path, 1337, [ACCOUNT], "consumer run").acquire().release()
