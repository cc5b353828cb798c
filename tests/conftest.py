"""A real PostgreSQL for the tests that need one (database sources, Optuna and MLflow storage).

``CHURNML_TEST_POSTGRES_URL`` points them at a running server. Otherwise the session starts a throwaway
one itself: ``initdb`` and ``pg_ctl`` from PATH or Debian's ``/usr/lib/postgresql/<version>/bin``
(``make test`` installs the package), in a temporary directory, on 127.0.0.1 and a free port, run as the
``postgres`` user when the tests run as root (PostgreSQL refuses root), and stopped when the session ends,
whatever happened. So ``make test`` alone is enough, on a laptop as in CI. Without binaries the tests are
skipped with the reason, except in CI (``CI`` set), where a missing install must not pass green.

Each test gets its own database (``postgres_url``), so tests and xdist workers sharing one server never
see each other's tables.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

URL_VARIABLE = "CHURNML_TEST_POSTGRES_URL"
SERVER_PREFIX = "churnml-postgres-"  # /tmp/churnml-postgres-*/: a server's data, socket, log and owner


def _binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, else the newest Debian install."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        map(Path, debian), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )[::-1]
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts, or one it must miss)."""
    return _free_port()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (``postgres``), as a superuser."""
    if os.environ.get(URL_VARIABLE):
        yield os.environ[URL_VARIABLE]
        return
    bindir = _binaries()
    if bindir is None:
        _unavailable(
            f"PostgreSQL is not installed (apt-get install postgresql), and {URL_VARIABLE} is not set"
        )
    assert bindir is not None
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        if runuser is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            _unavailable("running as root, and there is no 'postgres' user (or runuser) to run PostgreSQL as")
        as_user = [runuser, "-u", "postgres", "--"]
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    home = Path(tempfile.mkdtemp(prefix=SERVER_PREFIX, dir="/tmp"))
    # Who started it: .ci/run stops a server whose owner died without stopping it (a killed run).
    (home / "owner.pid").write_text(str(os.getpid()))
    if as_user:
        shutil.chown(home, "postgres")
    data, log, port = home / "data", home / "server.log", _free_port()

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)

    try:
        init = run(str(bindir / "initdb"), "-D", str(data), "-U", "churnml", "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--no-instructions")  # fmt: skip
        if init.returncode:
            pytest.fail(f"initdb failed: {init.stdout}{init.stderr}")
        # A throwaway cluster: durability off (fsync) makes it start and write fast.
        options = (
            f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        if start.returncode:
            pytest.fail(f"PostgreSQL did not start: {start.stdout}{start.stderr}\n{log.read_text()[-2000:]}")
        yield f"postgresql://churnml@127.0.0.1:{port}/postgres"
    finally:
        if data.exists():
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[Callable[[], str]]:
    """``postgres_database()``: the URL of a new, empty database on the test server; all dropped after
    the test (MLflow and Optuna each need their own: both keep an ``alembic_version`` table)."""
    names: list[str] = []

    def create() -> str:
        names.append(f"churnml_{uuid.uuid4().hex[:12]}")
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{names[-1]}"')
        return urlsplit(postgres_server)._replace(path=f"/{names[-1]}").geturl()

    yield create
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: Callable[[], str]) -> str:
    """URL of a new, empty database on the test server, dropped after the test."""
    return postgres_database()
