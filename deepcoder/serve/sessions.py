"""Multi-turn sessions: state, an idle TTL and a turn limit, owned by the key that made them.

``SessionStore`` is plain Python; the app runs one in the ``SessionStore`` deployment so every
ingress replica sees the same sessions (state is in memory: a restart forgets them). A turn is
taken with ``begin_turn`` (which marks the session busy, so two turns never run at once) and
recorded with ``end_turn``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


class SessionError(Exception):
    """status: 404 (unknown, expired or someone else's), 409 (busy or out of turns), 429 (too many)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Session:
    id: str
    owner: str
    kind: str
    model: str
    ttl_s: float
    max_turns: int
    created_at: float
    last_used: float
    turns: list[dict[str, Any]] = field(default_factory=list)
    busy: bool = False

    @property
    def expires_at(self) -> float:
        return self.last_used + self.ttl_s

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("owner")
        data.pop("last_used")
        data["expires_at"] = self.expires_at
        return data


class SessionStore:
    def __init__(self, max_sessions: int = 10000, clock=time.time) -> None:
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _purge(self) -> None:
        now = self._clock()
        for sid in [s.id for s in self._sessions.values() if s.expires_at <= now and not s.busy]:
            del self._sessions[sid]

    def _get(self, sid: str, owner: str) -> Session:
        session = self._sessions.get(sid)
        if session is None or session.owner != owner or (session.expires_at <= self._clock() and not session.busy):
            raise SessionError(404, f"session {sid!r} not found (unknown, expired or deleted)")
        return session

    def create(self, owner: str, kind: str, model: str, ttl_s: float, max_turns: int) -> dict[str, Any]:
        with self._lock:
            self._purge()
            if len(self._sessions) >= self.max_sessions:
                raise SessionError(429, f"too many live sessions ({self.max_sessions}); delete some or retry later")
            now = self._clock()
            session = Session(uuid.uuid4().hex, owner, kind, model, ttl_s, max_turns, now, now)
            self._sessions[session.id] = session
            return session.public()

    def get(self, sid: str, owner: str) -> dict[str, Any]:
        with self._lock:
            return self._get(sid, owner).public()

    def begin_turn(self, sid: str, owner: str) -> dict[str, Any]:
        with self._lock:
            session = self._get(sid, owner)
            if session.busy:
                raise SessionError(409, "a turn is already running in this session")
            if len(session.turns) >= session.max_turns:
                raise SessionError(409, f"session has reached its max_turns ({session.max_turns})")
            session.busy = True
            session.last_used = self._clock()
            return session.public()

    def end_turn(self, sid: str, owner: str, turn: dict[str, Any] | None) -> dict[str, Any] | None:
        """Record ``turn`` (None: the turn was abandoned) and free the session."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or session.owner != owner:
                return None
            session.busy = False
            session.last_used = self._clock()
            if turn is not None:
                session.turns.append({"index": len(session.turns), **turn})
            return session.public()

    def delete(self, sid: str, owner: str) -> None:
        with self._lock:
            self._get(sid, owner)
            del self._sessions[sid]

    def count(self) -> int:
        with self._lock:
            self._purge()
            return len(self._sessions)
