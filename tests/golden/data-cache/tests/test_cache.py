"""The parts under the endpoints: ID validation, store, preprocessing, tensor encoding, breaker."""

from __future__ import annotations

import io
import random
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from src.app.config import IMAGE_SIDE, SAMPLE_DATA_ID, Settings
from src.data.cache import decode_tensor, encode_tensor, key_prefix
from src.data.store import (
    DataStore,
    InvalidDataIdError,
    ItemNotFoundError,
    ItemTooLargeError,
    StoreUnavailableError,
    validate_data_id,
)
from src.ml.preprocess import DTYPE, FORMATS, ImageDecodeError, preprocess, tensor_shape

SETTINGS = Settings.from_env()


@pytest.mark.parametrize("good", ["digit-0000.png", "a", "A_b-c.d.jpeg", "0" * 200])
def test_plain_names_are_valid_ids(good: str) -> None:
    assert validate_data_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "..", "../x", "a/b", "/abs", "a\\b", "s3://b/k", "C:x", ".hidden", "a..b", "é.png"]
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(InvalidDataIdError):
        validate_data_id(bad)


def test_a_tensor_survives_encoding_exactly() -> None:
    tensor = np.linspace(0, 1, IMAGE_SIDE * IMAGE_SIDE, dtype=DTYPE)
    decoded = decode_tensor(encode_tensor(tensor), tensor.shape)
    assert decoded is not None
    assert decoded.dtype == DTYPE
    assert np.array_equal(decoded, tensor)


def npy(array: np.ndarray) -> bytes:
    """``array`` as a ``.npy`` file, whatever its dtype."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


SIZE = IMAGE_SIDE * IMAGE_SIDE


def test_entries_are_npy_files() -> None:
    tensor = np.arange(SIZE, dtype=DTYPE)
    assert np.array_equal(np.load(io.BytesIO(encode_tensor(tensor))), tensor)


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage",
        npy(np.zeros(3, dtype=DTYPE)),
        npy(np.zeros(SIZE, dtype=np.float64)),
        npy(np.zeros(SIZE, dtype=">f4")),
        npy(np.zeros((1, SIZE), dtype=DTYPE)),
        npy(np.full(SIZE, np.nan, dtype=DTYPE)),
        npy(np.zeros(SIZE, dtype=DTYPE))[:-1],
    ],
    ids=["not npy", "wrong size", "float64", "big-endian", "wrong shape", "not finite", "cut"],
)
def test_a_foreign_cache_entry_is_not_served(raw: bytes) -> None:
    assert decode_tensor(raw, tensor_shape(IMAGE_SIDE)) is None


def test_keys_change_with_the_store_and_the_preprocessing() -> None:
    base = key_prefix("svc", "file:///data", IMAGE_SIDE)
    assert base.startswith("svc:tensor:v")
    assert key_prefix("svc", "file:///other", IMAGE_SIDE) != base
    assert key_prefix("svc", "file:///data", IMAGE_SIDE + 1) != base


def test_the_sample_item_preprocesses_to_the_model_input() -> None:
    data = DataStore(SETTINGS.data_uri, SETTINGS.max_item_bytes).read(SAMPLE_DATA_ID)
    tensor = preprocess(data, IMAGE_SIDE)
    assert tensor.shape == tensor_shape(IMAGE_SIDE)
    assert tensor.dtype == DTYPE
    assert 0.0 <= float(tensor.min()) <= float(tensor.max()) <= 1.0
    assert np.array_equal(tensor, preprocess(data, IMAGE_SIDE))


def test_preprocessing_refuses_what_is_not_an_image() -> None:
    with pytest.raises(ImageDecodeError):
        preprocess(b"GIF89a not really", IMAGE_SIDE)


@pytest.mark.parametrize("image_format", FORMATS)
def test_mutated_images_are_read_or_refused_never_crash(image_format: str) -> None:
    """Flipped bytes in an image of every accepted format: a tensor or ImageDecodeError, always."""
    encoded = io.BytesIO()
    Image.new("L", (16, 16), 200).save(encoded, format=image_format)
    original = encoded.getvalue()
    rng = random.Random(f"fuzz-{image_format}")
    for _ in range(60):
        mutated = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cut = rng.choice([len(mutated), rng.randrange(1, len(mutated))])
        try:
            tensor = preprocess(bytes(mutated[:cut]), IMAGE_SIDE)
        except ImageDecodeError:
            continue
        assert tensor.shape == tensor_shape(IMAGE_SIDE)


def test_a_link_out_of_a_local_store_is_not_in_it(tmp_path: Path) -> None:
    store_dir, outside = tmp_path / "store", tmp_path / "secret.png"
    store_dir.mkdir()
    outside.write_bytes(b"outside the store")
    (store_dir / "inside.png").write_bytes(b"inside")
    (store_dir / "linked.png").symlink_to(outside)
    (store_dir / "alias.png").symlink_to(store_dir / "inside.png")
    store = DataStore(str(store_dir), max_item_bytes=1024)
    with pytest.raises(ItemNotFoundError):
        store.read("linked.png")
    assert store.read("alias.png") == b"inside"
    # fsspec lists a link as neither file nor folder: the warm job never meets one.
    assert store.ids() == ["inside.png"]


def test_any_fsspec_store_works() -> None:
    memory = fsspec.filesystem("memory")
    memory.pipe("/unit-store/a.png", b"12345")
    memory.mkdir("/unit-store/folder.png")
    try:
        store = DataStore("memory://unit-store", max_item_bytes=4)
        assert store.uri == "memory:///unit-store"
        assert store.ids() == ["a.png"]
        with pytest.raises(ItemTooLargeError):
            store.read("a.png")
        assert DataStore("memory://unit-store", max_item_bytes=5).read("a.png") == b"12345"
        for missing in ("b.png", "folder.png"):
            with pytest.raises(ItemNotFoundError):
                store.read(missing)
    finally:
        memory.rm("/unit-store", recursive=True)


def test_the_local_store_lists_the_shipped_items() -> None:
    ids = DataStore(SETTINGS.data_uri, SETTINGS.max_item_bytes).ids()
    assert SAMPLE_DATA_ID in ids
    assert ids == sorted(ids)


def test_an_unusable_store_uri_is_named() -> None:
    with pytest.raises(StoreUnavailableError, match="nope://"):
        DataStore("nope://bucket", 1024)
