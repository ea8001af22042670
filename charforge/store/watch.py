"""`ChangeWatch`: one SQLite connection that writes the appends and tells whether anyone else wrote.

SQLite's `PRAGMA data_version`, read on one connection, changes whenever another connection (of this
process or any other) has committed since the last read, and never for that connection's own
commits. The emotion history is appended through this connection, so a chat server recording a
state per turn leaves the stamp alone, while any other change (a new identity, an edited prompt, a
deleted character or asset, a finished render, another process's append) moves it. An in-memory
index of what the database says (`charforge.character.index`) is then valid for as long as the stamp
stays the same, and a cached answer needs no query at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

Stamp = tuple[int, int]


class ChangeWatch:
    """The connection (opened on first use) and a lock: sqlite3 connections are used by one thread at a time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine  # check_same_thread off: the lock below serialises its users
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._opened = 0  # how many connections so far: a stamp of one never equals a stamp of another

    def stamp(self) -> Stamp:
        """Equal to an earlier stamp only if nothing but this watch's appends was committed in between."""
        with self._lock:
            conn = self._connection()
            try:
                raw = conn.connection.driver_connection
                (version,) = raw.execute("PRAGMA data_version").fetchone()
            except Exception:
                self._drop()
                raise
            return (self._opened, int(version))

    @contextmanager
    def append(self) -> Iterator[Connection]:
        """A transaction on the watched connection (BEGIN IMMEDIATE, from the engine's set-up); commits on
        success. The caller holds the process's write turn, so this never waits on the lock for long."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.begin():
                    yield conn
            except DBAPIError:
                self._drop()  # whatever state the connection is in, the next user starts on a fresh one
                raise

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._engine.dispose()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
            self._opened += 1
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
