"""Decompression bombs: an input image is measured from its header and refused before any pixel
is decoded, at upload (a 400) and in the local provider (a job failing `invalid_request`)."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from providers.base import (
    MAX_INPUT_PIXELS,
    InputFile,
    ProviderInvalidRequestError,
    check_input_image,
)
from providers.local import render_edit
from tests.media_checks import declared_png


def test_a_bomb_is_refused_from_its_header() -> None:
    bomb = declared_png()
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(ProviderInvalidRequestError, match="13000x13000") as refused:
        check_input_image(bomb)
    assert time.perf_counter() - started < 0.5  # nothing was decoded
    assert "13000x13000" in refused.value.public
    with pytest.raises(ProviderInvalidRequestError):
        render_edit(InputFile("bomb.png", "image/png", bomb), "p", "256x256", None)


def test_ordinary_images_pass() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (1, 2, 3)).save(buf, format="WEBP")
    assert check_input_image(buf.getvalue()) == (640, 480)
    side = int(MAX_INPUT_PIXELS**0.5)
    assert check_input_image(declared_png(side, side)) == (side, side)  # at the limit: allowed
    with pytest.raises(ProviderInvalidRequestError, match="could not be read"):
        check_input_image(b"\x89PNG\r\n\x1a\n garbage")
