"""The data store: raw items by ID, from a local folder or any fsspec URI (s3://, gs://, memory://).

An ID is a plain file name directly inside the store. Anything that could reach elsewhere — a path
separator, "..", an absolute path, a URL scheme — is refused before the store is touched. In a
local folder an item that resolves outside it (a symbolic link to elsewhere) is not in the store.
"""

from __future__ import annotations

import os
import re

import fsspec

MAX_ID_LENGTH = 200
# Letters, digits, ".", "_" and "-", starting with a letter or a digit (so nothing hidden).
DATA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidDataIdError(ValueError):
    """The ID is not a plain file name inside the store."""


class ItemNotFoundError(LookupError):
    """No item has this ID."""


class ItemTooLargeError(Exception):
    """The item is larger than the service reads."""


class StoreUnavailableError(Exception):
    """The store cannot be read right now (or was configured with a URI that cannot work)."""


def validate_data_id(value: str) -> str:
    """``value`` when it names an item directly inside the store; InvalidDataIdError otherwise."""
    if not value:
        raise InvalidDataIdError("must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidDataIdError(f"must be at most {MAX_ID_LENGTH} characters")
    if "/" in value or "\\" in value:
        raise InvalidDataIdError("must be a plain name, not a path ('/' and '\\' are refused)")
    if ".." in value:
        raise InvalidDataIdError("must not contain '..'")
    if ":" in value:
        raise InvalidDataIdError("must not contain a URL scheme or a drive (':' is refused)")
    if not DATA_ID.fullmatch(value):
        raise InvalidDataIdError(
            "may hold only letters, digits, '.', '_' and '-', starting with a letter or a digit"
        )
    return value


def is_valid_data_id(value: str) -> bool:
    """Whether ``value`` passes :func:`validate_data_id`."""
    try:
        validate_data_id(value)
    except InvalidDataIdError:
        return False
    return True


class DataStore:
    """Reads items by ID from the folder or bucket prefix ``uri`` names."""

    def __init__(self, uri: str, max_item_bytes: int) -> None:
        try:
            self._fs, root = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as err:
            # An unknown scheme, or one whose package (s3fs, gcsfs, ...) is not installed.
            raise StoreUnavailableError(f"DATA_URI={uri!r}: {err}") from err
        self._root = root.rstrip("/")
        # A local folder's real path: where every item must resolve (a link may point anywhere).
        local = "file" in self._fs.protocol
        self._real_root = os.path.realpath(self._root) if local else None
        self.max_item_bytes = max_item_bytes
        # One spelling per store (a relative folder becomes file:///abs/path): part of cache keys.
        self.uri: str = self._fs.unstrip_protocol(self._root)

    def read(self, data_id: str) -> bytes:
        """The raw bytes of the item ``data_id``."""
        path = f"{self._root}/{validate_data_id(data_id)}"
        if not self._inside(path):
            raise ItemNotFoundError(data_id)
        try:
            # One byte more than allowed tells a too large item without reading all of it.
            data = self._fs.cat_file(path, start=0, end=self.max_item_bytes + 1)
        except (FileNotFoundError, IsADirectoryError):
            raise ItemNotFoundError(data_id) from None
        except OSError as err:
            raise StoreUnavailableError(f"cannot read {data_id!r}: {err}") from err
        if len(data) > self.max_item_bytes:
            raise ItemTooLargeError(f"larger than {self.max_item_bytes} bytes")
        return bytes(data)

    def ids(self) -> list[str]:
        """The ID of every item directly inside the store, sorted."""
        try:
            entries = self._fs.ls(self._root, detail=True)
        except OSError as err:
            raise StoreUnavailableError(f"cannot list {self.uri}: {err}") from err
        names = (
            str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            for entry in entries
            if entry.get("type") == "file"
        )
        return sorted(
            name
            for name in names
            if is_valid_data_id(name) and self._inside(f"{self._root}/{name}")
        )

    def _inside(self, path: str) -> bool:
        """Whether ``path`` resolves inside the store (always, for a store that is no folder)."""
        if self._real_root is None:
            return True
        return os.path.realpath(path).startswith(self._real_root + os.sep)
