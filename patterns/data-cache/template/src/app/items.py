"""Data items for the predict routes: the cached tensor if there is one, else store + preprocessing.

On a miss the answer does not wait for Redis: the tensor is stored by a background task that runs
after the response is sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi import BackgroundTasks, Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from src.app import config
from src.data.cache import TensorCache
from src.data.guard import CacheUnavailableError
from src.data.store import DataStore, ItemNotFoundError, ItemTooLargeError, StoreUnavailableError
from src.ml.preprocess import ImageDecodeError, preprocess

logger = logging.getLogger(__name__)

# hit: from Redis; miss: preprocessed, and being cached; bypass: Redis unavailable, not cached.
CacheOutcome = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True)
class Item:
    """A data item, ready for the model."""

    data_id: str
    tensor: np.ndarray
    cache: CacheOutcome

    @property
    def rows(self) -> np.ndarray:
        """The model's input: a batch of one."""
        return self.tensor[np.newaxis, :]


class ItemLoader:
    """Finds a data item's tensor, caching what it had to compute."""

    def __init__(self, store: DataStore, cache: TensorCache, background: BackgroundTasks) -> None:
        self._store = store
        self._cache = cache
        self._background = background

    async def load(self, data_id: str) -> Item:
        """The item ``data_id``; HTTPException 404, 422 or 503 when it cannot be had."""
        try:
            cached = await self._cache.get(data_id)
        except CacheUnavailableError:
            logger.info("cache bypass: %s", data_id)
            return Item(data_id, await self._preprocess(data_id), "bypass")
        if cached is not None:
            logger.info("cache hit: %s", data_id)
            return Item(data_id, cached, "hit")
        tensor = await self._preprocess(data_id)
        logger.info("registering cache: %s", data_id)
        self._background.add_task(self._cache.put, data_id, tensor)
        return Item(data_id, tensor, "miss")

    async def _preprocess(self, data_id: str) -> np.ndarray:
        # In a thread: the store may be remote, and decoding is CPU work the event loop must not do.
        try:
            return await run_in_threadpool(_load_and_preprocess, self._store, data_id)
        except ItemNotFoundError:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"data: no item {data_id!r} in the data store"
            ) from None
        except (ItemTooLargeError, ImageDecodeError) as err:
            detail = [{"loc": ["body", "data"], "msg": f"item {data_id!r}: {err}", "type": "item"}]
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None
        except StoreUnavailableError as err:
            logger.warning("data store unavailable: %s", err)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "data store unavailable; try again later"
            ) from None


def _load_and_preprocess(store: DataStore, data_id: str) -> np.ndarray:
    return preprocess(store.read(data_id), config.IMAGE_SIDE)


def get_loader(request: Request, background: BackgroundTasks) -> ItemLoader:
    """An item loader whose cache writes run after this request's answer."""
    return ItemLoader(request.app.state.store, request.app.state.cache, background)


def get_cache(request: Request) -> TensorCache:
    """The tensor cache of this worker."""
    cache: TensorCache = request.app.state.cache
    return cache


LoaderDep = Annotated[ItemLoader, Depends(get_loader)]
CacheDep = Annotated[TensorCache, Depends(get_cache)]
