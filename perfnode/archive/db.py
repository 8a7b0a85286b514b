"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL by URL; schema by Alembic."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from perfnode.errors import BadIndexUrl, IndexUnavailable, NoArchive, OutOfResources

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


def safe_url(url: str) -> str:
    """The URL to show a person: any password masked, even in a URL SQLAlchemy cannot parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _reason(exc: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip() and "sqlalche.me" not in ln]
    return lines[0] if lines else type(orig).__name__


def open_engine(url: str) -> Engine:
    """:func:`make_engine`, with a malformed URL or unknown database kind named in one line."""
    try:
        return make_engine(url)
    except NoSuchModuleError:
        kind = url.split(":", 1)[0]
        raise BadIndexUrl(f"index database URL {safe_url(url)}: unknown database kind {kind!r} "
                          "(sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)") from None
    except (ArgumentError, ValueError) as exc:
        raise BadIndexUrl(f"index database URL {safe_url(url)}: {_reason(exc)}") from None
    except ModuleNotFoundError as exc:
        raise BadIndexUrl(f"index database URL {safe_url(url)}: driver {exc.name!r} is not installed "
                          "(pip install 'perfnode[postgres]')") from None


def holds_index(engine: Engine) -> bool:
    """Whether the database already holds a perfnode index (Alembic has versioned it)."""
    url = engine.url
    if (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            and not Path(url.database).is_file()):
        return False
    return inspect(engine).has_table("alembic_version")


class Database:
    """The index: an engine, a session factory, and a unit-of-work helper.

    ``must_exist=True`` (commands that only read an archive) refuses a database that holds no index
    instead of creating one (:class:`~perfnode.errors.NoArchive`); an unreachable or malformed URL is
    :class:`~perfnode.errors.IndexUnavailable` / :class:`~perfnode.errors.BadIndexUrl`, one line each.
    """

    def __init__(self, url: str, migrate: bool = True, must_exist: bool = False) -> None:
        self.url = url
        if must_exist and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            raise NoArchive(f"no archive at {Path(url.removeprefix('sqlite:///')).parent} "
                            f"({Path(url.removeprefix('sqlite:///')).name} not found; "
                            "`perfnode serve --data DIR` makes one)")
        self.engine = open_engine(url)
        try:
            if must_exist and not holds_index(self.engine):
                raise NoArchive(f"index database {safe_url(url)} holds no perfnode archive")
            if migrate:
                upgrade(self.engine)
        except OperationalError as exc:
            self.engine.dispose()
            raise IndexUnavailable(f"index database {safe_url(url)}: {_reason(exc)}") from None
        except BaseException:
            self.engine.dispose()
            raise
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
