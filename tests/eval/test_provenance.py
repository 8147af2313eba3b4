"""Tests for eval.provenance: results carry the commit that produced them."""

import re
import subprocess

from eval.provenance import PROJECT_DIR, git_commit


def test_git_commit_names_the_checked_out_commit():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT_DIR)
    if head.returncode != 0:  # a source tree without .git (e.g. an sdist) has no commit to report
        assert git_commit() == "unknown"
        return
    commit = git_commit()
    assert re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?", commit)
    assert commit.split("-")[0] == head.stdout.strip()


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
