"""Where a result came from: the git commit of the working tree that produced it."""

from __future__ import annotations

import subprocess
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def git_commit(repo: Path = PROJECT_DIR) -> str:
    """Short commit hash of `repo`, with "-dirty" when it has uncommitted changes; "unknown" outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=repo)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=repo).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"
