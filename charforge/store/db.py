"""The workspace database: an SQLAlchemy `Engine` built from a URL, sessions per unit of work, migrations.

Any SQLAlchemy URL works (`Database.from_url`); dialect-specific set-up lives in one branch per
dialect below. SQLite, the default (`charforge.db` in the workspace), is tuned for several processes
sharing one file. Readers use deferred transactions and see a consistent WAL snapshot without
blocking anyone. Writers start with BEGIN IMMEDIATE, taking SQLite's single write lock up front
(waiting up to the busy timeout): a deferred writer that read first and wrote later could be refused
with "database is locked" when another process committed in between, and no timeout can fix that.
Lost updates between a read in one transaction and a write in another are caught one level up, by
the characters' version counter (a compare-and-swap that holds on every dialect).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from charforge.errors import CharforgeError, ConflictError, IntegrityError, InvalidInput, StorageError
from charforge.store.watch import ChangeWatch, Stamp

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
BUSY_TIMEOUT_S = 30.0


def _sqlite_engine(
    url: URL, *, immediate: bool, foreign_keys: bool, timeout: float, shared: bool = False
) -> Engine:
    """`shared`: one connection used by several threads in turn (the caller serialises them)."""
    engine = create_engine(url, connect_args={"timeout": timeout, **({"check_same_thread": False} if shared else {})})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across crashes in WAL mode, far fewer fsyncs
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _make_engine(url: URL, *, immediate: bool, foreign_keys: bool, timeout: float) -> Engine:
    """An engine for `url`; `immediate` asks for a writer that takes the write lock when it begins."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, immediate=immediate, foreign_keys=foreign_keys, timeout=timeout)
    # Server databases enforce foreign keys and lock rows on write by themselves; the version counter
    # catches lost updates. pool_pre_ping survives a server restart between units of work.
    try:
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:  # unknown dialect, or its driver is not installed
        raise InvalidInput(f"cannot use database URL {url.render_as_string(hide_password=True)}: {exc}") from None


def _busy(exc: DBAPIError) -> ConflictError | None:
    if "locked" in str(exc.orig) or "busy" in str(exc.orig):
        return ConflictError(
            f"the workspace database stayed locked by another process for more than {BUSY_TIMEOUT_S:g} s"
        )
    return None


def storage_error(exc: DBAPIError, where: object) -> CharforgeError:
    """A driver error as one line for the user: busy -> ConflictError, anything else -> StorageError
    (not a database, read-only, disk full, ...). Constraint violations are bugs and are not mapped."""
    if busy := _busy(exc):
        return busy
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None and str(exc.orig).strip() else ""
    return StorageError(f"cannot open the database {where}: {reason or type(exc).__name__}")


def _mapped(exc: DBAPIError) -> bool:
    return not isinstance(exc, SAIntegrityError)


def _check_revision(revision: object) -> None:
    """Alembic asserts (instead of raising a usable error) on some malformed targets, e.g. ''."""
    if not isinstance(revision, str) or not re.fullmatch(r"[A-Za-z0-9_+\-@]{1,64}", revision):
        raise InvalidInput(f"not a schema revision: {revision!r} (e.g. head, base, 0001)")


def _parse_url(url: str | URL | os.PathLike[str]) -> URL:
    """A URL from a URL or a plain file path (a path means an SQLite file)."""
    if isinstance(url, URL):
        return url
    text = os.fspath(url)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text)))
    try:
        return make_url(text)
    except ArgumentError:
        raise InvalidInput(f"not a database URL: {text!r} (e.g. sqlite:///path/charforge.db)") from None


_WRITER_LOCKS: dict[str, threading.RLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(url: URL) -> threading.RLock:
    """One lock per database file in this process, shared by every `Database` opened on it. Reentrant:
    a nested write in the same thread then fails at SQLite's lock (as it always did), not here."""
    if not url.database or url.database == ":memory:":  # a private database per connection: nobody to queue with
        return threading.RLock()
    key = os.path.abspath(url.database)
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.RLock())


class Database:
    """Sessions and migrations for one database (an SQLite file unless another URL is given).

    Only `charforge.store` opens sessions: one per unit of work (`read` or `write`).
    """

    def __init__(self, url: str | URL | os.PathLike[str], *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.url = _parse_url(url)
        self._timeout = busy_timeout
        self._reader = _make_engine(self.url, immediate=False, foreign_keys=True, timeout=busy_timeout)
        self._writer = _make_engine(self.url, immediate=True, foreign_keys=True, timeout=busy_timeout)
        self._writers = _writer_lock(self.url) if self.dialect == "sqlite" else None
        self._watch = (
            ChangeWatch(_sqlite_engine(self.url, immediate=True, foreign_keys=True, timeout=busy_timeout, shared=True))
            if self.dialect == "sqlite"
            else None
        )

    @classmethod
    def from_url(cls, url: str | URL, *, busy_timeout: float = BUSY_TIMEOUT_S) -> Database:
        """The database at an SQLAlchemy URL, e.g. `sqlite:///ws/charforge.db` or `postgresql+psycopg://...`."""
        return cls(url, busy_timeout=busy_timeout)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def path(self) -> Path | None:
        """The database file (SQLite), else None."""
        return Path(self.url.database) if self.dialect == "sqlite" and self.url.database else None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self._reader.dispose()
        self._writer.dispose()
        if self._watch is not None:
            self._watch.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot of the database."""
        with Session(self._reader, expire_on_commit=False) as session:
            try:
                with session.begin():
                    yield session
            except DBAPIError as exc:
                if not _mapped(exc):
                    raise
                raise storage_error(exc, self) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction holding the write lock; commits on success, rolls back on any error.

        SQLite writers of this process queue on a lock first: a writer refused by SQLite's lock polls
        with sleeps of up to 100 ms (its busy handler), so threads of a server recording emotions at
        once would wait far longer than the few milliseconds each write holds the lock. Other
        processes still meet at SQLite's lock, within the busy timeout.
        """
        with self._write_turn(), Session(self._writer, expire_on_commit=False) as session:
            try:
                with session.begin():
                    yield session
            except DBAPIError as exc:
                if not _mapped(exc):
                    raise
                raise storage_error(exc, self) from exc

    @contextmanager
    def append(self) -> Iterator[Connection]:
        """A write transaction for appends that change nothing anyone caches (the emotion history).

        On SQLite it runs on the connection `stamp` watches, in this process's write turn, so these
        appends leave the stamp alone; elsewhere it is a plain write (and there is no stamp).
        """
        if self._watch is None:
            with self.write() as session:
                yield session.connection()
            return
        with self._write_turn():
            try:
                with self._watch.append() as conn:
                    yield conn
            except DBAPIError as exc:
                if not _mapped(exc):
                    raise
                raise storage_error(exc, self) from exc

    def stamp(self) -> Stamp | None:
        """A value that stays equal while nothing but `append`s of this `Database` has been committed,
        by anyone; caches of rows may be kept while it does. None: this database cannot tell (not SQLite)."""
        if self._watch is None:
            return None
        try:
            return self._watch.stamp()
        except DBAPIError as exc:
            raise storage_error(exc, self) from exc

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """This process's turn to write (SQLite), within the same timeout as SQLite's own lock."""
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=self._timeout):
            raise ConflictError(f"the workspace database stayed locked by a writer for more than {self._timeout:g} s")
        try:
            yield
        finally:
            self._writers.release()

    # migrations ---------------------------------------------------------------------------------

    @staticmethod
    def script() -> ScriptDirectory:
        return ScriptDirectory(str(MIGRATIONS_DIR))

    @staticmethod
    @cache  # the shipped scripts do not change while the process runs; every open asks for the head
    def head_revision() -> str:
        head = Database.script().get_current_head()
        assert head is not None, "the shipped migrations have no head revision"
        return head

    def current_revision(self) -> str | None:
        try:
            with self._reader.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except DBAPIError as exc:
            raise storage_error(exc, self) from None

    def upgrade(self, revision: str = "head") -> str | None:
        _check_revision(revision)
        self._migrate(lambda cfg: command.upgrade(cfg, revision))
        return self.current_revision()

    def downgrade(self, revision: str) -> str | None:
        _check_revision(revision)
        self._migrate(lambda cfg: command.downgrade(cfg, revision))
        return self.current_revision()

    def ensure_current(self) -> None:
        """Bring the schema to head if it is not there yet (cheap when it already is)."""
        current = self.current_revision()
        head = self.head_revision()
        if current == head:
            return
        if current is not None and self._unknown(current):
            raise InvalidInput(
                f"workspace database {self} is at revision {current!r}, which this version of "
                "charforge does not know (was it made by a newer charforge?)"
            )
        log.info("migrating %s from %s to %s", self, current or "empty", head)
        self.upgrade("head")

    def _unknown(self, revision: str) -> bool:
        try:
            return self.script().get_revision(revision) is None
        except CommandError:
            return True

    def _migrate(self, run: Callable[[Config], None]) -> None:
        # Foreign keys must be off while migrating SQLite: batch migrations drop and recreate tables,
        # and with enforcement on, dropping a parent table would cascade-delete its children's rows.
        engine = _make_engine(self.url, immediate=True, foreign_keys=False, timeout=self._timeout)
        try:
            with engine.begin() as conn:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
                cfg.attributes["connection"] = conn
                try:
                    run(cfg)
                except CommandError as exc:
                    raise InvalidInput(f"migration failed: {exc}") from None
                self._check_references(conn)
        except DBAPIError as exc:
            raise storage_error(exc, self) from exc
        finally:
            engine.dispose()

    def _check_references(self, conn: Connection) -> None:
        """SQLite checks references only when asked (enforcement was off while migrating); servers always do."""
        if self.dialect != "sqlite":
            return
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise IntegrityError(f"migration left {len(broken)} rows with dangling references; rolled back")
