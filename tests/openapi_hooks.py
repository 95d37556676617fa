"""schemathesis hooks for the OpenAPI contract check (loaded by `st run` through
SCHEMATHESIS_HOOKS; see openapi_contract.py).

* `format: byte` fields are images here (`contentMediaType: image/*`): a fuzzer cannot invent a
  decodable image, so schema-valid ones are small PNG, JPEG and GIF files of random size, mode
  and colour.
* The one rule the document states only in words, item ids unique within an upsert, is kept
  by dropping generated bodies that repeat an id.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _image(width: int, height: int, mode: str, colour: int, fmt: str) -> str:
    image = Image.new(mode, (width, height), colour if mode != "RGB" else (colour,) * 3)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return base64.b64encode(out.getvalue()).decode("ascii")


IMAGES = st.builds(
    _image,
    st.integers(1, 48),
    st.integers(1, 48),
    st.sampled_from(["RGB", "L", "P"]),
    st.integers(0, 255),
    st.sampled_from(["PNG", "GIF", "BMP"]),
)
schemathesis.openapi.format("byte", IMAGES)


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return True
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    return len(ids) == len(set(map(repr, ids)))
