"""Pure logic: ids, keys, signing, input validation, the arq wire format, event notices."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.jobs.inputs import validate_input
from app.media.service import sign, verify
from app.platform.errors import InvalidRequestError
from app.platform.events import parse_notice
from app.platform.ids import hash_key, new_api_key, new_id
from app.platform.tasks import RemoteJobError, deserialize, serialize
from providers.registry import default_catalog


def test_ids_sort_by_creation_and_keys_have_the_documented_shape() -> None:
    first = new_id("job")
    time.sleep(0.002)
    second = new_id("job")
    assert first < second and first.startswith("job_") and len(first) == 30
    key = new_api_key()
    assert key.startswith("mg_") and len(key) == 46
    assert hash_key(key) != key and len(hash_key(key)) == 64


def test_signature_checks_id_expiry_and_secret() -> None:
    now = time.time()
    sig = sign(b"s", "med_1", int(now) + 60)
    assert verify(b"s", "med_1", int(now) + 60, sig, now)
    assert not verify(b"s", "med_2", int(now) + 60, sig, now)
    assert not verify(b"t", "med_1", int(now) + 60, sig, now)
    assert not verify(b"s", "med_1", int(now) + 60, sig, now + 61)


def test_input_validation_normalises_and_names_the_param() -> None:
    catalog = default_catalog()
    image = catalog.get("local-image")
    assert image is not None
    assert validate_input(image, {"prompt": "x"}) == {
        "prompt": "x",
        "n": 1,
        "size": "1024x1024",
        "seed": None,
    }
    with pytest.raises(InvalidRequestError) as info:
        validate_input(image, {"prompt": "x", "n": True})
    assert info.value.param == "input.n"
    speech = catalog.get("local-speech")
    assert speech is not None
    with pytest.raises(InvalidRequestError) as info:
        validate_input(speech, {"input": "hi", "voice": "robot"})
    assert info.value.param == "input.voice"


def test_wire_format_is_json_and_round_trips_exceptions() -> None:
    raw = serialize({"f": "generate_media", "a": ["job_1"], "r": asyncio.CancelledError()})
    assert raw.startswith(b"{")  # JSON, never pickle
    data = deserialize(raw)
    assert isinstance(data["r"], asyncio.CancelledError)
    other = deserialize(serialize({"r": ValueError("boom")}))
    assert isinstance(other["r"], RemoteJobError)


def test_event_notice_parsing() -> None:
    event = parse_notice(b'job_1\n7\njob.progress\n{"progress":50}')
    assert (event.stream_id, event.id, event.event, event.data) == (
        "job_1",
        7,
        "job.progress",
        {"progress": 50},
    )
    assert not event.terminal
