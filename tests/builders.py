"""What tests build again and again, in one place, as factories: request bodies, small real
images, an OpenAI SDK client pointed at a stack, a free loopback port, any JSON (for fuzzing)."""

from __future__ import annotations

import io
import json
import socket
from typing import TYPE_CHECKING, Any

import openai
from hypothesis import strategies as st
from PIL import Image

if TYPE_CHECKING:
    from tests.infra import Stack


def image_job(prompt: str = "a fox", size: str = "256x256", **fields: Any) -> dict[str, Any]:
    """A `POST /v1/jobs` body for the local image model."""
    return {
        "type": "image",
        "model": "local-image",
        "input": {"prompt": prompt, "size": size},
        **fields,
    }


def png(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real PNG of one colour."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def openai_client(stack: Stack, key: str) -> openai.OpenAI:
    """OpenAI's own SDK, pointed at the stack with a virtual key, without the SDK's retries."""
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=60)


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value, small: for fuzzing what a body may hold."""


def dumps(value: Any) -> bytes:
    """JSON as any client may write it (integers of any size, any character)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
