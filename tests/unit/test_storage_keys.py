"""Storage keys are made and read in one place (app/media/storage_keys.py): what one function
writes, the other reads back, for every shape an object has had."""

from __future__ import annotations

from app.media.storage_keys import (
    StoredName,
    download_name,
    input_key,
    job_prefix,
    output_key,
    parse,
)
from app.platform.vocabulary import Variant


def test_an_outputs_key_says_whose_it_is_and_which_attempt_wrote_it() -> None:
    key = output_key("key_a", "job_b", 3, 1, "png")
    assert key.startswith(job_prefix("key_a", "job_b"))
    assert parse(key) == StoredName("key_a", "job_b", 3, "1.png")
    assert download_name(key) == "job_b-1.png"
    assert output_key("key_a", "job_b", 3, 1, "png") != key  # every write has its own object


def test_a_thumbnail_an_upload_and_an_old_output() -> None:
    thumb = output_key("key_a", "job_b", 1, 0, "webp", Variant.THUMBNAIL)
    assert parse(thumb).file == "0.thumbnail.webp" and parse(thumb).attempt == 1
    upload = input_key("key_a", "med_c", "png")
    assert parse(upload) == StoredName("key_a", None, None, "med_c.png")
    assert download_name(upload) == "med_c.png"
    old = "key_a/job_b/0.png"  # written before attempts were in the name
    assert parse(old) == StoredName("key_a", "job_b", None, "0.png")
    assert download_name(old) == "job_b-0.png"
