"""A real, throw-away PostgreSQL server for tests (initdb + pg_ctl in a temporary folder).

Runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as root), listens on
127.0.0.1 and a free port with trust authentication, and is stopped by :meth:`PgServer.stop`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.nodes import free_port


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb``/``pg_ctl``/``postgres``, or ``None``."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                        reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for c in candidates:
        if all((Path(c) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


@dataclass
class PgServer:
    bindir: Path
    root: Path
    port: int
    user: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _cmd(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *args]
        return list(args)

    def start(self) -> PgServer:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        subprocess.run(self._cmd(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                 "--auth=trust", "--encoding=UTF8", "--no-sync"),
                       check=True, capture_output=True, env=env, cwd=self.root)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c max_connections=200 -c shared_buffers=32MB")
        subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
                                 "-o", opts, "-l", str(self.root / "server.log"), "start"),
                       check=True, capture_output=True, env=env, cwd=self.root)
        return self

    def createdb(self, name: str) -> str:
        """Create a database; return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                                 "-w", "stop"), capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def start_pg() -> PgServer | None:
    """Start a server in a new temporary folder, or ``None`` when PostgreSQL is not installed."""
    bindir = find_pg_bin()
    if bindir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="perfnode-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    root.chmod(0o700)
    return PgServer(bindir, root, free_port()).start()
