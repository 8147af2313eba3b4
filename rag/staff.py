"""Staff accounts for the workspace: bcrypt-hashed passwords in a file outside the repository, no default account.

    python -m rag staff add anna --name "Anna Andersson"     # asks for the password twice
    python -m rag staff list
    python -m rag staff remove anna

The file is $RAG_STAFF_FILE, else ~/.config/cancer-rag/staff.json (created with mode 0600). Sessions, timeouts and
the lockout after failed attempts are the app's (ui/staff.py).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path

MIN_PASSWORD_CHARS = 12
_USER = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")


@lru_cache(maxsize=1)
def _dummy_hash() -> bytes:
    """A hash to check unknown user names against, so they take as long as known ones."""
    import bcrypt

    return bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=12))


def staff_file() -> Path:
    return Path(os.environ.get("RAG_STAFF_FILE") or Path.home() / ".config" / "cancer-rag" / "staff.json").expanduser()


@dataclass(frozen=True)
class StaffUser:
    username: str
    name: str


class StaffAccounts:
    """Read, check and change the staff accounts file.

    Parameters
    ----------
    path : Path, optional
        The accounts file (default `staff_file()`).
    """

    _lock = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else staff_file()

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"users": {}}
        except (OSError, ValueError) as exc:
            raise ValueError(f"the staff accounts file {self.path} cannot be read ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise ValueError(f"the staff accounts file {self.path} is not an accounts file")
        return data

    def users(self) -> list[StaffUser]:
        return [StaffUser(u, str(v.get("name") or u)) for u, v in sorted(self._load()["users"].items())]

    def configured(self) -> bool:
        try:
            return bool(self._load()["users"])
        except ValueError:
            return False

    def verify(self, username: str, password: str) -> StaffUser | None:
        """The user when the password is right, else None (the same work is done for an unknown user)."""
        import bcrypt

        username = (username or "").strip().lower()
        try:
            entry = self._load()["users"].get(username)
        except ValueError:
            entry = None
        hashed = entry.get("hash", "").encode() if entry else _dummy_hash()
        try:
            ok = bcrypt.checkpw((password or "").encode("utf-8"), hashed)
        except ValueError:
            ok = False
        return StaffUser(username, str(entry.get("name") or username)) if ok and entry else None

    def add(self, username: str, password: str, name: str = "") -> None:
        """Create or replace an account; the password must be at least MIN_PASSWORD_CHARS long."""
        import bcrypt

        username = username.strip().lower()
        if not _USER.match(username):
            raise ValueError("the user name must be 2-40 characters: lower-case letters, digits, . _ -")
        if len(password) < MIN_PASSWORD_CHARS:
            raise ValueError(f"the password must be at least {MIN_PASSWORD_CHARS} characters")
        with self._lock:
            data = self._load()
            data["users"][username] = {
                "name": name.strip() or username,
                "hash": bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=12)).decode(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            self._write(data)

    def remove(self, username: str) -> bool:
        with self._lock:
            data = self._load()
            gone = data["users"].pop(username.strip().lower(), None) is not None
            if gone:
                self._write(data)
            return gone

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{time.time_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class LoginThrottle:
    """Lock a user name out for `lock_seconds` after `max_failures` wrong passwords within `window_seconds`
    (across all sessions of the server process)."""

    def __init__(self, max_failures: int = 5, window_seconds: float = 600, lock_seconds: float = 300) -> None:
        self.max_failures, self.window, self.lock_seconds = max_failures, window_seconds, lock_seconds
        self._failures: dict[str, list[float]] = {}
        self._guard = threading.Lock()

    def locked(self, username: str, now: float | None = None) -> float:
        """Seconds until the user may try again (0 when not locked)."""
        now = now or time.time()
        with self._guard:
            recent = [t for t in self._failures.get(username, []) if now - t < self.window]
            self._failures[username] = recent
            if len(recent) >= self.max_failures:
                return max(0.0, recent[-1] + self.lock_seconds - now)
            return 0.0

    def failed(self, username: str, now: float | None = None) -> None:
        with self._guard:
            self._failures.setdefault(username, []).append(now or time.time())

    def succeeded(self, username: str) -> None:
        with self._guard:
            self._failures.pop(username, None)
