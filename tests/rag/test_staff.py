"""Staff accounts: hashes only, no default account, strong passwords, throttling; the CLI that manages them."""

import json
import os
import subprocess
import sys

import pytest

from rag.staff import LoginThrottle, StaffAccounts
from tests.conftest import PROJECT_ROOT


def test_accounts_store_only_a_bcrypt_hash_with_private_permissions(tmp_path):
    accounts = StaffAccounts(tmp_path / "cfg" / "staff.json")
    assert not accounts.configured() and accounts.users() == []
    accounts.add("Anna", "ett långt lösenord", name="Anna A")
    raw = accounts.path.read_text(encoding="utf-8")
    assert "ett långt lösenord" not in raw and json.loads(raw)["users"]["anna"]["hash"].startswith("$2b$")
    assert oct(os.stat(accounts.path).st_mode & 0o777) == "0o600"
    assert accounts.verify("anna", "ett långt lösenord").name == "Anna A"
    assert accounts.verify("ANNA ", "ett långt lösenord") is not None
    assert accounts.verify("anna", "fel") is None and accounts.verify("okänd", "ett långt lösenord") is None
    assert accounts.remove("anna") and not accounts.configured()


@pytest.mark.parametrize("user, password", [("a", "ett långt lösenord"), ("anna", "kort"), ("an na", "x" * 20),
                                            ("../etc", "x" * 20)])
def test_bad_user_names_and_short_passwords_are_refused(tmp_path, user, password):
    with pytest.raises(ValueError):
        StaffAccounts(tmp_path / "s.json").add(user, password)


def test_a_damaged_accounts_file_lets_nobody_in(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("[1, 2]", encoding="utf-8")
    assert StaffAccounts(path).verify("anna", "x") is None and not StaffAccounts(path).configured()


def test_throttle_locks_after_repeated_failures_and_releases():
    t = LoginThrottle(max_failures=3, window_seconds=60, lock_seconds=30)
    for i in range(3):
        assert t.locked("anna", now=100 + i) == 0
        t.failed("anna", now=100 + i)
    assert 0 < t.locked("anna", now=105) <= 30
    assert t.locked("anna", now=140) == 0  # the lock has run out
    assert t.locked("erik", now=105) == 0  # per user


def test_the_cli_adds_lists_and_removes_an_account(tmp_path):
    env = {**os.environ, "RAG_STAFF_FILE": str(tmp_path / "staff.json")}
    run = lambda *a, stdin="": subprocess.run([sys.executable, "-m", "rag", "staff", *a], input=stdin, text=True,  # noqa: E731
                                              capture_output=True, env=env, cwd=PROJECT_ROOT, timeout=60)
    assert run("add", "erik", "--name", "Erik E", "--password-stdin", stdin="ett långt lösenord\n").returncode == 0
    assert run("list").stdout.strip() == "erik\tErik E"
    bad = run("add", "kalle", "--password-stdin", stdin="kort\n")
    assert bad.returncode == 2 and "at least" in bad.stderr
    assert run("remove", "erik").returncode == 0 and run("list").stdout.strip() == ""
