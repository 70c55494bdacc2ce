"""The OpenAI-compatible endpoints, driven by the official `openai` Python SDK as the client, on the
local provider (the upstream providers have their own tests against emulators)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from tests.builders import openai_client, png
from tests.infra import Stack
from tests.media_checks import audio_samples, mp4_facts, png_size


def test_images_generate_url_and_b64(pg_s3_stack: Stack) -> None:
    client = openai_client(pg_s3_stack, pg_s3_stack.new_key())
    result = client.images.generate(model="local-image", prompt="a red kite", n=2, size="256x256")
    assert len(result.data) == 2 and result.created > 0
    for image in result.data:
        assert image.url is not None and image.url.startswith(pg_s3_stack.url + "/v1/media/")
        # Our signed link, never the provider's: it works with no key at all.
        resp = httpx.get(image.url, follow_redirects=True, timeout=30)
        assert resp.status_code == 200
        assert png_size(resp.content) == (256, 256)

    b64 = client.images.generate(
        model="local-image", prompt="a red kite", size="512x512", response_format="b64_json"
    )
    assert b64.data[0].b64_json is not None
    assert png_size(base64.b64decode(b64.data[0].b64_json)) == (512, 512)


def test_images_errors_have_openai_shape(pg_s3_stack: Stack) -> None:
    client = openai_client(pg_s3_stack, pg_s3_stack.new_key())
    with pytest.raises(openai.BadRequestError) as bad_size:
        client.images.generate(model="local-image", prompt="x", size="7x7")
    assert bad_size.value.code == "invalid_request"
    assert bad_size.value.param == "size"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.images.generate(model="no-such-model", prompt="x")
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai_client(pg_s3_stack, "mg_wrong").images.generate(model="local-image", prompt="x")


def test_images_respond_async_gives_the_job(pg_s3_stack: Stack) -> None:
    key = pg_s3_stack.new_key()
    resp = httpx.post(
        f"{pg_s3_stack.url}/v1/images/generations",
        json={"model": "local-image", "prompt": "later", "size": "256x256"},
        headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["preference-applied"] == "respond-async"
    job = resp.json()
    assert job["object"] == "job" and job["type"] == "image"
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"


def test_images_edit_uploads_the_image_as_an_input(pg_s3_stack: Stack) -> None:
    key = pg_s3_stack.new_key()
    client = openai_client(pg_s3_stack, key)
    result = client.images.edit(
        model="local-image",
        image=("source.png", png(), "image/png"),
        prompt="add a moon",
        size="256x256",
        response_format="b64_json",
    )
    assert result.data[0].b64_json is not None
    edited = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).convert("RGB")
    assert edited.size == (256, 256)
    # The upload's red shows through the blend: the edit really used the input.
    red, green, _ = edited.getpixel((5, 5))  # type: ignore[misc]
    assert red > green

    with pytest.raises(openai.BadRequestError) as not_an_image:
        client.images.edit(
            model="local-image", image=("x.png", b"not an image", "image/png"), prompt="x"
        )
    assert not_an_image.value.param == "image"


def test_videos_create_and_poll_then_download(pg_s3_stack: Stack, tmp_path: Path) -> None:
    key = pg_s3_stack.new_key()
    client = openai_client(pg_s3_stack, key)
    video = client.videos.create_and_poll(
        model="local-video", prompt="a sweeping ball", seconds="4", size="320x180"
    )
    assert video.status == "completed" and video.progress == 100
    assert video.seconds == "4" and video.size == "320x180"
    content = client.videos.download_content(video.id)
    duration, width, height, codec = mp4_facts(content.read())
    assert (width, height, codec) == (320, 180, "h264") and abs(duration - 4) < 0.2
    thumbnail = client.videos.download_content(video.id, variant="thumbnail")
    still = Image.open(io.BytesIO(thumbnail.read()))
    assert still.format == "WEBP" and still.size == (320, 180)

    # The same job, seen through the native API.
    job = httpx.get(
        f"{pg_s3_stack.url}/v1/jobs/{video.id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).json()
    assert job["status"] == "succeeded" and job["type"] == "video"

    listed = client.videos.list()
    assert [v.id for v in listed.data] == [video.id]

    deleted = client.videos.delete(video.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    # Its media went with it.
    assert httpx.get(job["outputs"][0]["url"], timeout=30).status_code == 404


def test_video_poll_header_and_input_reference(pg_s3_stack: Stack) -> None:
    key = pg_s3_stack.new_key()
    client = openai_client(pg_s3_stack, key)
    raw = client.videos.with_raw_response.create(
        model="local-video",
        prompt="from a still",
        seconds="4",
        size="320x180",
        input_reference=("ref.png", png((320, 180), (10, 200, 10)), "image/png"),
    )
    assert raw.headers["openai-poll-after-ms"].isdigit()
    video = client.videos.poll(raw.parse().id)
    assert video.status == "completed"
    thumbnail = client.videos.download_content(video.id, variant="thumbnail").read()
    red, green, _ = Image.open(io.BytesIO(thumbnail)).convert("RGB").getpixel((3, 3))  # type: ignore[misc]
    assert green > red  # the reference image's green is in the first frame

    other = openai_client(pg_s3_stack, pg_s3_stack.new_key())
    with pytest.raises(openai.NotFoundError):
        other.videos.retrieve(video.id)


def test_speech_returns_audio_bytes(pg_s3_stack: Stack) -> None:
    client = openai_client(pg_s3_stack, pg_s3_stack.new_key())
    speech = client.audio.speech.create(
        model="local-speech", voice="alloy", input="Hello from mediagate.", response_format="wav"
    )
    assert speech.response.headers["content-type"] == "audio/wav"
    samples, rate = audio_samples(speech.read())
    assert rate == 24_000 and samples > rate // 2
    with pytest.raises(openai.BadRequestError) as bad_voice:
        client.audio.speech.create(model="local-speech", voice="nobody", input="hi")  # type: ignore[arg-type]
    assert bad_voice.value.param == "voice"
    with pytest.raises(openai.BadRequestError) as bad_format:
        client.audio.speech.create(
            model="local-speech", voice="alloy", input="hi", response_format="aac"
        )
    assert bad_format.value.param == "response_format"


def test_models_list_and_aliases(pg_s3_stack: Stack) -> None:
    key = pg_s3_stack.new_key()
    client = openai_client(pg_s3_stack, key)
    ids = {m.id for m in client.models.list()}
    assert {"local-image", "local-video", "local-speech"} <= ids
    assert "dall-e-3" not in ids  # openai is not configured on this stack

    with pg_s3_stack.admin() as admin:
        bad = admin.post(
            "/admin/models", json={"name": "mixed", "targets": ["local-image", "local-speech"]}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "targets"
        created = admin.post(
            "/admin/models", json={"name": "house-image", "targets": ["local-image"]}
        )
        assert created.status_code == 201, created.text
        assert created.json()["type"] == "image"
        listed = admin.get("/admin/models").json()
        assert "house-image" in {a["name"] for a in listed["data"]}
    try:
        assert "house-image" in {m.id for m in client.models.list()}
        result = client.images.generate(model="house-image", prompt="x", size="256x256")
        assert result.data[0].url
    finally:
        with pg_s3_stack.admin() as admin:
            assert admin.delete("/admin/models/house-image").status_code == 200
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="house-image", prompt="x")
    # A virtual key cannot reach the admin API.
    resp = httpx.get(
        f"{pg_s3_stack.url}/admin/models", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert resp.status_code == 401
