"""Fixtures of the batch job's tests: a real Spark (local[2]) and a real PostgreSQL.

Spark needs a Java runtime (17 or later) on PATH or in JAVA_HOME. PostgreSQL: DATABASE_URL, if
set, names an empty database to use; else the tests start their own server on 127.0.0.1 from the
PostgreSQL binaries (apt-get install postgresql), in a temporary folder. PostgreSQL refuses to
run as root: as root, the server runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pyspark.sql import SparkSession

from src.batch import job
from src.batch.settings import BatchSettings, build_settings, defaults

PROJECT = Path(__file__).resolve().parents[2]
SAMPLE_ROWS = 20000
RUN_DATE = dt.date(2026, 1, 15)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_binaries() -> Path:
    """The folder holding initdb and pg_ctl."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("the tests need PostgreSQL's initdb (apt-get install postgresql)")
    return Path(found[-1]).parent


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as ``postgres`` when the tests run as root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def postgres_server(folder: Path) -> Iterator[str]:
    """A PostgreSQL server of its own in ``folder``; its URL while it runs."""
    binaries = postgres_binaries()
    port = free_port()
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    subprocess.run(
        as_server_user(
            [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
    subprocess.run(as_server_user([*pg_ctl, "-o", options, "-w", "start"]), check=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_server_user([*pg_ctl, "-m", "immediate", "stop"]), check=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """An empty database for the session."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    # Not under pytest's temporary folder: as root that is closed to the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="postgres-"))
    try:
        with postgres_server(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The session's database with no predictions table."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS predictions")
    return database_url


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One Spark for the session, on two cores as a small machine has."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = job.session(settings_for(Path("unused"), Path("unused")))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample data set (``SAMPLE_ROWS`` rows, one in 1,000 bad), from the project's script."""
    folder = tmp_path_factory.mktemp("input")
    subprocess.run(
        [
            sys.executable,
            str(PROJECT / "scripts" / "sample_data.py"),
            str(folder),
            "--rows",
            str(SAMPLE_ROWS),
        ],
        check=True,
        capture_output=True,
    )
    return folder


def settings_for(
    input_uri: Path, output: Path, database_url: str | None = None, **values: str
) -> BatchSettings:
    """The job's settings for a test: local[2], its own folders, no metrics."""
    merged = {
        **defaults({}),
        "input": str(input_uri),
        "output": str(output),
        "master": "local[2]",
        "database_url": database_url or "",
        **values,
    }
    return build_settings(merged, [RUN_DATE])


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., BatchSettings]:
    """``settings_for`` with a fresh output folder of the test."""

    def make(input_uri: Path, database_url: str | None = None, **values: str) -> BatchSettings:
        return settings_for(input_uri, tmp_path / "output", database_url, **values)

    return make
