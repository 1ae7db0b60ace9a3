"""Warm the cache in advance: preprocess items of the data store and store their tensors in Redis.

    python -m src.warm                 every item in the data store
    python -m src.warm ID [ID ...]     only these items

It reads the service's environment (DATA_URI, REDIS_URL, CACHE_TTL_SECONDS, ...), so its keys are
the ones the service looks up. Warming again refreshes each entry's TTL. Exit status: 0 when every
item was cached; 1 when some could not be (each is named on stderr), or the store or Redis could not
be reached; 2 for a malformed ID or setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from src.app import config
from src.app.config import Settings, SettingsError
from src.data.cache import encode_tensor, key_prefix
from src.data.guard import redacted
from src.data.store import (
    DataStore,
    InvalidDataIdError,
    ItemNotFoundError,
    ItemTooLargeError,
    StoreUnavailableError,
    validate_data_id,
)
from src.ml.preprocess import ImageDecodeError, preprocess

# Items per Redis round trip.
BATCH = 64
# A batch job can wait for Redis longer than a request can.
TIMEOUT_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: optional item IDs."""
    parser = argparse.ArgumentParser(
        prog="python -m src.warm", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="items to warm (default: all)")
    args = parser.parse_args(argv)
    for data_id in args.ids:
        try:
            validate_data_id(data_id)
        except InvalidDataIdError as err:
            parser.error(f"{data_id!r}: {err}")
    return args


def batches(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """``ids`` in slices of BATCH."""
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def warm(store: DataStore, client: Redis, prefix: str, ids: Sequence[str], ttl: int) -> int:
    """Cache every item of ``ids``; how many were cached. Items that fail are named on stderr."""
    cached = 0
    for chunk in batches(ids):
        pipe = client.pipeline(transaction=False)
        for data_id in chunk:
            try:
                tensor = preprocess(store.read(data_id), config.IMAGE_SIDE)
            except ItemNotFoundError:
                print(f"{data_id}: no such item in {store.uri}", file=sys.stderr)
                continue
            except (ItemTooLargeError, ImageDecodeError) as err:
                print(f"{data_id}: {err}", file=sys.stderr)
                continue
            pipe.set(f"{prefix}{data_id}", encode_tensor(tensor), ex=ttl)
            cached += 1
        pipe.execute()
    return cached


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status."""
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        store = DataStore(settings.data_uri, settings.max_item_bytes)
        ids = args.ids or store.ids()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StoreUnavailableError as err:
        print(f"error: data store: {err}", file=sys.stderr)
        return 1
    prefix = key_prefix(config.SERVICE_NAME, store.uri, config.IMAGE_SIDE)
    started = time.perf_counter()
    client = Redis.from_url(
        settings.redis_url,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        # A few quick retries ride out a blip; a Kubernetes Job's backoffLimit handles the rest.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 2),
    )
    try:
        cached = warm(store, client, prefix, ids, settings.cache_ttl_seconds)
    except RedisError as err:
        print(f"error: redis at {redacted(settings.redis_url)}: {err}", file=sys.stderr)
        return 1
    except StoreUnavailableError as err:
        print(f"error: data store: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(
        f"cached {cached} of {len(ids)} items from {store.uri} in {redacted(settings.redis_url)} "
        f"under {prefix}* (ttl {settings.cache_ttl_seconds} s) in "
        f"{time.perf_counter() - started:.2f} s"
    )
    return 0 if cached == len(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
