"""Preprocessing: an encoded image → the tensor the model takes.

The contract (the training script of the sample model does exactly the same; change both or
neither, and raise PREPROCESS_VERSION): decode the image, convert it to 8-bit grayscale, resize it
to side x side pixels with bilinear filtering, scale it to [0, 1] as float32 and flatten it row by
row.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Which preprocessing made a tensor: data-cache puts it in every cache key, so that a new version
# leaves the entries of the old one unread until they expire.
PREPROCESS_VERSION = 1
DTYPE = np.float32
# Only these decoders are tried on the bytes: fewer decoders, less attack surface.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# Checked from the header before anything is decoded, so one huge image cannot exhaust a worker.
MAX_PIXELS = 4096 * 4096


class ImageDecodeError(Exception):
    """The bytes are not an image this service can read."""


def tensor_shape(side: int) -> tuple[int]:
    """The shape of one preprocessed item (the model's input row)."""
    return (side * side,)


def preprocess(data: bytes, side: int) -> np.ndarray:
    """The model-input tensor of one encoded image; ImageDecodeError if it is not one."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"{image.width}x{image.height} pixels is more than {MAX_PIXELS} pixels"
                )
            gray = image.convert("L").resize((side, side), Image.Resampling.BILINEAR)
    except ImageDecodeError:
        raise
    except Exception:  # malformed bytes make Pillow raise many types
        # (OSError, SyntaxError for a bad PNG chunk, struct.error, ...); its message names a
        # temporary buffer object and helps nobody.
        raise ImageDecodeError(f"not an image this service reads ({', '.join(FORMATS)})") from None
    return (np.asarray(gray, dtype=DTYPE) / DTYPE(255.0)).reshape(-1)
