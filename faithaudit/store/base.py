"""Engine set-up (SQLite in WAL mode, PostgreSQL), read/write transactions, migrations, health."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from faithaudit.store.schema import MIGRATIONS_DIR

SQLITE_BUSY_TIMEOUT_MS = 30_000
IDLE_PING_SECONDS = 1.0  # a PostgreSQL connection idle in the pool this long is pinged before it is handed out
_MIGRATION_LOCK_ID = 0x0FA17A0D17  # pg advisory lock serialising concurrent upgrades
_WRITE = "faithaudit_write"
UPGRADE_TRIES = 5


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_race(exc: Exception) -> bool:
    """Errors a concurrent first-time upgrade can cause, which a retry resolves."""
    text = str(exc).lower()
    return "already exists" in text or "database is locked" in text


def _normalise_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: sa.URL) -> Engine:
    """SQLite in WAL mode with a busy timeout; write transactions start with BEGIN IMMEDIATE."""
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def _postgres_engine(url: sa.URL, pool_size: int) -> Engine:
    """A pool of ``pool_size`` connections (and as many more for a burst). A connection back from the pool is
    pinged when it has been idle ``IDLE_PING_SECONDS`` or more, and replaced when the ping fails (a restarted
    server, a dropped socket): SQLAlchemy's ``pool_pre_ping`` would ping on every checkout, a round trip per
    transaction, while under load a connection is back in use within milliseconds. The pool hands out the most
    recently returned connection first (LIFO), so at a low rate the same few stay warm and unpinged, and the rest
    idle until a burst needs them. A failed ping replaces that connection only (``pool_pre_ping`` invalidated the
    whole pool); one returned less than a second before a server restart fails its statement instead."""
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True)

    @sa.event.listens_for(engine, "checkin")
    def _stamp(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in_at")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool discards this connection and checks out a fresh one
            record.info.pop("checked_in_at", None)
            raise sa.exc.DisconnectionError(f"idle connection failed its ping: {exc}") from exc

    return engine


class StoreBase:
    """The engine and transactions every table group's methods run in."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        """``pool_size``: PostgreSQL connections kept open, and as many more opened for a burst (SQLite: one
        file, SQLAlchemy's own pool)."""
        parsed = _normalise_url(url)
        self.url = parsed
        self.pool_size = pool_size
        if parsed.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(parsed)
        else:
            self.engine = _postgres_engine(parsed, pool_size)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        # one-statement writes on PostgreSQL: no BEGIN and COMMIT round trips (a statement is atomic on its own)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._upgrade_lock = threading.Lock()
        self._sqlite_writers = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        return cls(settings.resolved_database_url(), pool_size=settings.db_pool_size)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that will write (BEGIN IMMEDIATE on SQLite, so it never fails upgrading its lock).

        On SQLite, writers of this process also queue on a Python lock: SQLite's own busy wait (sleep and retry)
        is far slower under a burst of concurrent writers than a plain FIFO lock.
        """
        with self._sqlite_writers if self.dialect == "sqlite" else nullcontext(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _one_statement(self) -> Iterator[Connection]:
        """Where the caller writes with one statement: on PostgreSQL in autocommit (atomic on its own, and no BEGIN
        and COMMIT round trips), on SQLite the usual write transaction."""
        if self.dialect == "sqlite":
            with self._write() as conn:
                yield conn
        else:
            with self._autocommit.connect() as conn:
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Migrate to the newest schema; safe when several processes do it at once."""
        with self._upgrade_lock:
            for attempt in range(UPGRADE_TRIES):
                try:
                    self._upgrade_once()
                    return
                except SQLAlchemyError as exc:
                    if attempt + 1 == UPGRADE_TRIES or not _is_race(exc):
                        raise
                    time.sleep(0.05 * (attempt + 1))  # another process is migrating (or just did)

    def _upgrade_once(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%"))
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # any failure means "not healthy"
            return False

    def warm(self) -> int:
        """Open the pool's connections now, each with a first read of every table (a new PostgreSQL backend
        loads its catalog on its first queries: a few milliseconds each), so that a burst after start-up reuses
        them instead of opening connections while requests wait; and run the hot writes once, rolled back
        (``_warm_writes``). How many are open; 0 for SQLite."""
        if self.dialect == "sqlite":
            return 0
        from faithaudit.store.schema import metadata

        with ExitStack() as held:  # held together: one connection each, not the same one again and again
            for k in range(self.pool_size):
                conn = held.enter_context(self.engine.connect())
                for table in metadata.sorted_tables:
                    conn.execute(sa.select(sa.literal(1)).select_from(table).limit(0))
                if k == 0:
                    self._warm_writes(conn)
                conn.rollback()
        return self.pool_size

    def _warm_writes(self, conn: Connection) -> None:
        """Run the hot write statements once in ``warm``'s transaction, which is rolled back: SQLAlchemy compiles a
        statement on its first execution in a process (milliseconds for the submit's), then reuses it."""

    def dispose(self) -> None:
        self.engine.dispose()
