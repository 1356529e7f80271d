"""JPEG snapshots of frames."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from pipeline.records import Image


def encode_jpeg(image: Image, quality: int = 85) -> bytes:
    """Encode an RGB frame as JPEG (call it off the event loop: it takes milliseconds)."""
    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()
