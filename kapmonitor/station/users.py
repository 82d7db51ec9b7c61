"""Users, roles, login sessions, CSRF tokens and the login rate limit.

What belongs here: who may see and who may act, and nothing about HTTP.

The user file (JSON, written by ``kapmonitor station adduser``) maps a user name to a role
and an argon2id hash (argon2-cffi defaults)::

    {"users": {"alice": {"role": "clinician", "hash": "$argon2id$...", "name": "Dr A"}}}

Roles: ``viewer`` (sees and hears), ``clinician`` (may also act), ``admin`` (may act; meant
for whoever keeps the user file). Login sessions live in memory only: a restarted station
asks everyone to log in again, and no session secret is ever written to disk.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("viewer", "clinician", "admin")
ACTING_ROLES = frozenset({"clinician", "admin"})
_hasher = PasswordHasher()
# Verified against when the user name is unknown, so that the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


@dataclass(frozen=True)
class User:
    name: str
    role: str
    display: str

    @property
    def may_act(self) -> bool:
        return self.role in ACTING_ROLES


def load_users(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise ValueError(f"{path}: expected {{\"users\": {{...}}}}")
    return users


def add_user(path: Path, name: str, password: str, role: str,
             display: str | None = None) -> None:
    """Create or replace a user (the file is rewritten atomically, mode 0600)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(password) < 8:
        raise ValueError("a user name and a password of at least 8 characters are required")
    users = load_users(path)
    users[name] = {"role": role, "hash": _hasher.hash(password), "name": display or name}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"users": users}, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


@dataclass
class LoginSession:
    token: str
    csrf: str
    user: User
    expires: float


@dataclass
class RateLimit:
    attempts: int
    window_s: float
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, key: str, now: float) -> bool:
        q = self.failures.get(key)
        if q is None:
            return False
        while q and q[0] < now - self.window_s:
            q.popleft()
        return len(q) >= self.attempts

    def fail(self, key: str, now: float) -> None:
        self.failures.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        self.failures.pop(key, None)


class Auth:
    def __init__(self, users_file: Path, *, session_s: float, attempts: int,
                 window_s: float) -> None:
        self.users_file = users_file
        self.session_s = session_s
        self.limit = RateLimit(attempts, window_s)
        self.sessions: dict[str, LoginSession] = {}

    def login(self, name: str, password: str, client: str) -> LoginSession | str:
        """A new session, or the reason (``rate_limited`` or ``invalid``)."""
        now = time.monotonic()
        keys = (f"user:{name}", f"addr:{client}")
        if any(self.limit.blocked(k, now) for k in keys):
            return "rate_limited"
        entry = load_users(self.users_file).get(name)
        try:
            _hasher.verify(entry["hash"] if entry else _DUMMY_HASH, password)
            ok = entry is not None and entry.get("role") in ROLES
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or entry is None:
            for k in keys:
                self.limit.fail(k, now)
            return "invalid"
        for k in keys:
            self.limit.reset(k)
        user = User(name, str(entry["role"]), str(entry.get("name") or name))
        s = LoginSession(secrets.token_urlsafe(32), secrets.token_urlsafe(24), user,
                         now + self.session_s)
        self.sessions[s.token] = s
        return s

    def session(self, token: str | None) -> LoginSession | None:
        if not token:
            return None
        s = self.sessions.get(token)
        if s is None:
            return None
        if time.monotonic() > s.expires:
            del self.sessions[token]
            return None
        return s

    def logout(self, token: str | None) -> None:
        if token:
            self.sessions.pop(token, None)

    @staticmethod
    def csrf_ok(s: LoginSession, sent: str | None) -> bool:
        return bool(sent) and secrets.compare_digest(s.csrf, str(sent))
