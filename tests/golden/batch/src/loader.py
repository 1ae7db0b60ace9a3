"""Put the model in place before it is used: ``python -m src.loader``.

The model comes from MODEL_URI (``file://``, ``http(s)://``, ``s3://`` or ``gs://``; the stores
other than files need the clients pinned in requirements-loader.txt), must have the sha256
MODEL_SHA256, and is written to MODEL_FILEPATH. It is downloaded under a temporary name beside the
target and renamed only once verified, so a partial or unverified file is never seen there. Network
errors are retried with exponential backoff; a model already in place with the right sha256 is not
fetched again. Options of a store's client come from fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>``
variables (``FSSPEC_S3_ENDPOINT_URL`` for an S3-compatible store) or the client's own ones
(``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``).

Bounded in size and time: a model larger than LOADER_MAX_BYTES (default the volume's sizeLimit)
is refused, before it is read when the store declares its size, else as soon as it grows past it;
a larger model than the volume has free space is refused too. Each attempt waits at most
LOADER_CONNECT_TIMEOUT_SECONDS to connect and LOADER_READ_TIMEOUT_SECONDS for each read (HTTP and
S3), and stops after LOADER_TIMEOUT_SECONDS in all. Credentials in MODEL_URI are never printed.

Exit status: 0 loaded or already in place, 2 bad settings, 3 not found, 4 checksum mismatch,
5 access refused, 6 retries exhausted, 7 too large for its cap or its volume, 143 stopped by
SIGTERM. A failure is one line on stderr and
leaves no partial file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import logging
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL_FILE_NAME = "iris_svc.onnx"
DEFAULT_URI = ""
DEFAULT_SHA256 = "66b06d8e86d8716b2ff065744352ff0c75f175e94ee7a66614391dcb279b48e4"
# The package each store needs beside fsspec (requirements-loader.txt pins them all).
CLIENTS = {
    "file": "fsspec",
    "http": "aiohttp",
    "https": "aiohttp",
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
}
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 1 << 20
# Kubernetes quantities, for the default size cap (the volume's sizeLimit).
QUANTITY = re.compile(r"(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?")
UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
VOLUME_SIZE_LIMIT = "1Gi"
MAX_DELAY_SECONDS = 60.0
# Errors of the stores' clients that no retry can fix, and those that mean the transfer was cut.
REFUSED = ("botocore.exceptions:NoCredentialsError", "google.auth.exceptions:GoogleAuthError")
DROPPED = (
    "aiohttp:ClientPayloadError",
    "aiohttp:ServerDisconnectedError",
    "botocore.exceptions:IncompleteReadError",
    "botocore.exceptions:ResponseStreamingError",
)


class LoadError(Exception):
    """The model could not be put in place; the message is the one line an operator reads."""

    exit_code = 1


class SettingsError(LoadError):
    """A setting (MODEL_URI, MODEL_SHA256, MODEL_FILEPATH, retries) is missing or invalid."""

    exit_code = 2


class NotFoundError(LoadError):
    """The store says there is no model at MODEL_URI."""

    exit_code = 3


class ChecksumError(LoadError):
    """The model was fetched whole, but its sha256 is not MODEL_SHA256."""

    exit_code = 4


class RefusedError(LoadError):
    """The store refused access (credentials, permissions): retrying would not help."""

    exit_code = 5


class TransferError(LoadError):
    """Every attempt failed on the network: refused, timed out, or dropped mid-transfer."""

    exit_code = 6


class TooLargeError(LoadError):
    """The model is larger than LOADER_MAX_BYTES, or than the free space of its volume."""

    exit_code = 7


class RetryableError(Exception):
    """One attempt failed in a way another attempt may not."""


@dataclass(frozen=True)
class Job:
    """What to load, what it must be, and where it goes."""

    uri: str
    sha256: str
    target: Path
    attempts: int
    backoff_seconds: float
    max_bytes: int = 2**30
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 30.0
    timeout_seconds: float = 600.0


def parse_job(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Job:
    """The job from the command line, each option defaulting to its environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m src.loader",
        description="Fetch the model, verify its sha256 and move it into place.",
    )
    default_target = PROJECT_ROOT / "models" / MODEL_FILE_NAME
    option = parser.add_argument
    option("--uri", default=environ.get("MODEL_URI") or DEFAULT_URI, help="MODEL_URI")
    option("--sha256", default=environ.get("MODEL_SHA256") or DEFAULT_SHA256, help="MODEL_SHA256")
    option("--output", default=environ.get("MODEL_FILEPATH") or str(default_target))
    option("--attempts", default=environ.get("LOADER_ATTEMPTS", "5"), help="LOADER_ATTEMPTS")
    option("--backoff", default=environ.get("LOADER_BACKOFF_SECONDS", "1"), help="first wait (s)")
    option("--max-bytes", default=environ.get("LOADER_MAX_BYTES", VOLUME_SIZE_LIMIT))
    option("--connect-timeout", default=environ.get("LOADER_CONNECT_TIMEOUT_SECONDS", "10"))
    option("--read-timeout", default=environ.get("LOADER_READ_TIMEOUT_SECONDS", "30"))
    option("--timeout", default=environ.get("LOADER_TIMEOUT_SECONDS", "600"))
    args = parser.parse_args(argv)
    return Job(
        uri=_uri(args.uri.strip()),
        sha256=_sha256_setting(args.sha256),
        target=Path(args.output),
        attempts=_count("LOADER_ATTEMPTS", args.attempts),
        backoff_seconds=_seconds("LOADER_BACKOFF_SECONDS", args.backoff),
        max_bytes=_bytes("LOADER_MAX_BYTES", args.max_bytes),
        connect_timeout_seconds=_positive_seconds(
            "LOADER_CONNECT_TIMEOUT_SECONDS", args.connect_timeout
        ),
        read_timeout_seconds=_positive_seconds("LOADER_READ_TIMEOUT_SECONDS", args.read_timeout),
        timeout_seconds=_positive_seconds("LOADER_TIMEOUT_SECONDS", args.timeout),
    )


def _uri(uri: str) -> str:
    if not uri:
        raise SettingsError("MODEL_URI is not set: the file://, http(s)://, s3:// or gs:// model")
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme not in CLIENTS:
        raise SettingsError(f"MODEL_URI={uri!r}: expected file://, http(s)://, s3:// or gs://")
    if uri.endswith("/"):
        raise SettingsError(f"MODEL_URI={uri!r} names a folder, not the model file")
    return uri


def _sha256_setting(value: str) -> str:
    digest = value.strip().lower()
    if not SHA256_HEX.match(digest):
        raise SettingsError(f"MODEL_SHA256={value!r}: expected 64 hexadecimal digits")
    return digest


def _count(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsError(f"{name}={raw!r}: expected a whole number, at least 1")
    return value


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise SettingsError(f"{name}={raw!r}: expected a number of seconds, at least 0")
    return value


def _bytes(name: str, raw: str) -> int:
    match = QUANTITY.fullmatch(raw.strip())
    if match is None or int(match[1]) < 1:
        raise SettingsError(f"{name}={raw!r}: expected a size such as 1073741824 or 1Gi")
    return int(match[1]) * UNITS[match[2]]


def _positive_seconds(name: str, raw: str) -> float:
    value = _seconds(name, raw)
    if value == 0:
        raise SettingsError(f"{name}={raw!r}: expected a number of seconds above 0")
    return value


def load(job: Job, say: Callable[[str], None]) -> str:
    """Put the model at ``job.target``; what was done, in one line."""
    job.target.parent.mkdir(parents=True, exist_ok=True)
    # One loader per volume: a temporary file left here was left by an attempt that was killed.
    for stale in job.target.parent.glob(f".{job.target.name}.*.part"):
        stale.unlink(missing_ok=True)
    if job.target.is_file() and file_sha256(job.target) == job.sha256:
        return f"{job.target} is already in place (sha256 {job.sha256}); not fetched again"
    store, path = open_store(job)
    part = fetch(job, store, path, say)
    try:
        digest = file_sha256(part)
        if digest != job.sha256:
            raise ChecksumError(
                f"checksum mismatch: {job.uri} has sha256 {digest}, MODEL_SHA256 is {job.sha256}"
            )
        part.chmod(0o644)
        part.replace(job.target)
    finally:
        part.unlink(missing_ok=True)
    _sync_folder(job.target.parent)
    return f"loaded {job.uri} into {job.target} (sha256 {job.sha256} verified)"


def open_store(job: Job) -> tuple[Any, str]:
    """The fsspec filesystem for the job's URI, with its timeouts, and the path on it."""
    uri = job.uri
    scheme = uri.partition("://")[0].lower()
    try:
        import fsspec

        store, path = fsspec.core.url_to_fs(uri, **_client_options(scheme, job))
    except ImportError as err:
        raise SettingsError(
            f"{scheme}:// needs {CLIENTS[scheme]} (pip install -r requirements-loader.txt): {err}"
        ) from err
    except ValueError as err:
        raise SettingsError(f"MODEL_URI={uri!r}: {_one_line(err)}") from err
    if scheme == "file" and Path(path).is_dir():
        raise SettingsError(f"MODEL_URI={uri!r} names a folder, not the model file")
    return store, path


def _client_options(scheme: str, job: Job) -> dict[str, Any]:
    """Connect and read timeouts in the store client's terms (HTTP: aiohttp, S3: botocore)."""
    if scheme in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=job.connect_timeout_seconds, sock_read=job.read_timeout_seconds
        )
        return {"client_kwargs": {"timeout": timeout}}
    if scheme == "s3":
        return {
            "config_kwargs": {
                "connect_timeout": job.connect_timeout_seconds,
                "read_timeout": job.read_timeout_seconds,
            }
        }
    return {}


def fetch(job: Job, store: Any, path: str, say: Callable[[str], None]) -> Path:
    """Download into a temporary file beside the target, retrying what may pass; that file."""
    attempt = 1
    while True:
        handle, name = tempfile.mkstemp(
            prefix=f".{job.target.name}.", suffix=".part", dir=job.target.parent
        )
        os.close(handle)
        part = Path(name)
        try:
            _copy(store, path, part, job)
            return part
        except RetryableError as err:
            part.unlink(missing_ok=True)
            if attempt >= job.attempts:
                raise TransferError(
                    f"retries exhausted after {attempt} attempts: {err} ({job.uri})"
                ) from err
            delay = _delay(job.backoff_seconds, attempt)
            say(f"attempt {attempt}/{job.attempts} failed: {err}; retrying in {delay:.1f} s")
            time.sleep(delay)
            attempt += 1
        except BaseException:
            part.unlink(missing_ok=True)
            raise


def _copy(store: Any, path: str, part: Path, job: Job) -> None:
    """One attempt, within the size cap and the time limit.

    A store client's error becomes a LoadError, or a RetryableError.
    """
    import fsspec.callbacks

    class Guard(fsspec.callbacks.Callback):  # type: ignore[misc]
        """Told the size and every chunk by the store's client: stops what goes too far."""

        def __init__(self) -> None:
            super().__init__()
            self.received = 0
            self.deadline = time.monotonic() + job.timeout_seconds

        def set_size(self, size: int | None) -> None:
            _check_room(size if isinstance(size, int) else None, job, part.parent)

        def relative_update(self, inc: int = 1) -> None:
            self.received += inc
            if self.received > job.max_bytes:
                raise TooLargeError(_too_large(job, f"more than {self.received} bytes"))
            if time.monotonic() > self.deadline:
                raise RetryableError(f"not done after {job.timeout_seconds:g} s")

    try:
        _check_room(_declared_size(store, path), job, part.parent)
        store.get_file(path, str(part), callback=Guard())
    except (LoadError, RetryableError):
        raise
    # The stores' clients raise many unrelated types; each is sorted out below.
    except Exception as err:
        received = part.stat().st_size if part.exists() else 0
        raise _classify(err, job.uri, received) from err


def _declared_size(store: Any, path: str) -> int | None:
    """The size a local store declares for the model; others tell it as they send it."""
    if "file" not in store.protocol:
        return None
    size = store.info(path).get("size")
    return size if isinstance(size, int) else None


def _check_room(size: int | None, job: Job, folder: Path) -> None:
    """TooLargeError before anything is read, when the declared size cannot fit."""
    if size is None:
        return
    if size > job.max_bytes:
        raise TooLargeError(_too_large(job, f"{size} bytes"))
    free = shutil.disk_usage(folder).free
    if size > free:
        raise TooLargeError(f"the model is {size} bytes; {folder} has {free} bytes free")


def _too_large(job: Job, size: str) -> str:
    return f"the model is {size}, over LOADER_MAX_BYTES ({job.max_bytes}): not loaded"


def _classify(err: Exception, uri: str, received: int) -> Exception:
    # aiohttp names an HTTP status "status", the Google clients "code".
    status = getattr(err, "status", None) or getattr(err, "code", None)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return TooLargeError(f"the volume filled up after {received} bytes: {_one_line(err)}")
    if isinstance(err, FileNotFoundError) or status == 404:
        return NotFoundError(f"not found: {uri}")
    refused_status = isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)
    if isinstance(err, PermissionError) or refused_status or isinstance(err, _types(REFUSED)):
        return RefusedError(f"access refused: {uri}: {_one_line(err)}")
    if isinstance(err, _types(DROPPED)) or received:
        return RetryableError(
            f"connection dropped mid-transfer after {received} bytes: {_one_line(err)}"
        )
    return RetryableError(f"network error: {type(err).__name__}: {_one_line(err)}")


def _types(names: Sequence[str]) -> tuple[type[BaseException], ...]:
    """The exception classes named ``module:Class`` whose client is installed."""
    found: list[type[BaseException]] = []
    for name in names:
        module_name, _, attribute = name.partition(":")
        with contextlib.suppress(ImportError):
            found.append(getattr(importlib.import_module(module_name), attribute))
    return tuple(found)


def _delay(base: float, attempt: int) -> float:
    # Jitter: pods started together (a rollout) must not hit the store in lockstep.
    return min(MAX_DELAY_SECONDS, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _one_line(err: BaseException) -> str:
    return _squeeze(str(err)) or type(err).__name__


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks; its data is flushed to disk on the way."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
        os.fsync(handle.fileno())
    return digest.hexdigest()


def _sync_folder(folder: Path) -> None:
    """Make the rename durable; a filesystem that cannot sync a folder is left as it is."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


# Secrets a model URI may carry: the user:password before the host, and every query value (a
# presigned URL's X-Amz-Signature, X-Goog-Credential, sig, token, ...).
USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
QUERY_VALUE = re.compile(r"([?&][^=&\s'\"]+)=[^&\s'\"]*")


def redact(text: str) -> str:
    """``text`` with the credentials of any URI in it replaced by ``***``: safe to log or show."""
    return QUERY_VALUE.sub(r"\1=***", USERINFO.sub("***@", text))


class _OneLine(logging.Formatter):
    """The store clients' own log records, one line each, without tracebacks or credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return f"model-loader: {record.name}: {redact(_squeeze(record.getMessage()))}"


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # A pod deleted while loading: unwind as for an error, so the temporary file is removed.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loader; the exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    # stderr is kept for the one line that says why the loader failed; the rest goes to stdout.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        job = parse_job(argv, os.environ)
        message = load(job, lambda line: print(f"model-loader: {redact(line)}"))
    except LoadError as err:
        print(f"model-loader: {redact(str(err))}", file=sys.stderr)
        return err.exit_code
    print(f"model-loader: {redact(message)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
