"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL by URL; schema by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from perfnode.errors import OutOfResources

MIGRATIONS = Path(__file__).with_name("migrations")
#: Execution option marking a read-only connection (see :meth:`Database.read`).
READ_ONLY = "perfnode_read_only"


def make_engine(url: str) -> Engine:
    """An engine tuned for many short write transactions from concurrent associations.

    SQLite: WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns),
    a 60 s busy timeout, and ``BEGIN IMMEDIATE`` for every transaction so that concurrent
    writers queue on the lock instead of failing with "database is locked" when a read
    transaction tries to upgrade. Read-only sessions (:meth:`Database.read`) use a deferred BEGIN:
    in WAL mode they never wait for, nor hold up, a writer.
    """
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=20)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - every test
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:  # pragma: no cover
            # Writers serialise at BEGIN; readers (Database.read) take no lock until they read.
            read_only = conn.get_execution_options().get(READ_ONLY)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # PostgreSQL: no JIT. The index's queries are short OLTP lookups; when statistics are missing or
    # stale the planner's cost estimate can trigger JIT compilation costing 100–300 ms per query.
    connect_args = {"options": "-c jit=off"} if url.startswith("postgresql") else {}
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True, connect_args=connect_args)


#: SQLite result codes and PostgreSQL SQLSTATE classes meaning "no room" (disk, memory, connections).
_SQLITE_FULL = ("database or disk is full", "out of memory", "disk i/o error")
_PG_INSUFFICIENT_RESOURCES = "53"


def out_of_resources(exc: BaseException) -> OutOfResources | None:
    """The index could not write for want of space or memory: an :class:`OutOfResources` saying so."""
    if not isinstance(exc, OperationalError):
        return None
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig).strip().splitlines()[0] if orig is not None else str(exc)
    if (sqlstate and str(sqlstate).startswith(_PG_INSUFFICIENT_RESOURCES)) or any(
            m in text.lower() for m in _SQLITE_FULL):
        return OutOfResources(f"index cannot be written: {text}")
    return None


@contextmanager
def _resources_named() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        full = out_of_resources(exc)
        if full is not None:
            raise full from exc
        raise


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


class Database:
    """The index: an engine, a session factory, and a unit-of-work helper."""

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                          expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One session per unit of work: commit on success, roll back on error.

        A full disk (or PostgreSQL out of resources) is raised as :class:`OutOfResources`."""
        with _resources_named(), self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in one transaction (committed on success): the cheapest write path.

        A full disk (or PostgreSQL out of resources) is raised as :class:`OutOfResources`."""
        with _resources_named(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only; on SQLite it does not take the write lock (deferred BEGIN)."""
        with self.read_sessions() as s:  # closing ends the transaction; loaded objects stay usable
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
