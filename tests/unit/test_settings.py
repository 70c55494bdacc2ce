from __future__ import annotations

import pytest

from app.core.settings import Settings, SettingsError

BASE = {"MEDIAGATE_ADMIN_KEY": "a" * 20}


def test_defaults_and_conversion() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "MEDIAGATE_WORKER_CONCURRENCY": "3",
            "MEDIAGATE_WORKER_POLL_DELAY": "0.1",
            "MEDIAGATE_STORAGE": "s3",
            "MEDIAGATE_S3_CREATE_BUCKET": "yes",
            "MEDIAGATE_S3_PUBLIC_BASE_URL": "",
        }
    )
    assert (s.worker_concurrency, s.worker_poll_delay, s.storage) == (3, 0.1, "s3")
    assert s.s3_create_bucket is True and s.s3_public_base_url is None
    assert s.database_url.startswith("sqlite+aiosqlite://")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MEDIAGATE_STORAGE": "disk"}, "MEDIAGATE_STORAGE"),
        ({"MEDIAGATE_WORKER_CONCURRENCY": "many"}, "MEDIAGATE_WORKER_CONCURRENCY"),
        ({"MEDIAGATE_WORKER_CONCURRENCY": "0"}, "MEDIAGATE_WORKER_CONCURRENCY"),
        ({"MEDIAGATE_DATABASE_URL": "mysql://x"}, "MEDIAGATE_DATABASE_URL"),
        ({"MEDIAGATE_REDIS_URL": "http://x"}, "MEDIAGATE_REDIS_URL"),
        ({"MEDIAGATE_DEV": "maybe"}, "MEDIAGATE_DEV"),
        ({"MEDIAGATE_ADMIN_KEY": "short"}, "MEDIAGATE_ADMIN_KEY"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env({**BASE, **env})


def test_admin_key_required_outside_dev() -> None:
    with pytest.raises(SettingsError, match="MEDIAGATE_ADMIN_KEY"):
        Settings.from_env({})
    assert Settings.from_env({}, dev=True).admin_key is None


def test_signing_secret_is_stable_and_overridable() -> None:
    a = Settings.from_env(BASE)
    assert a.signing_secret == Settings.from_env(BASE).signing_secret
    assert Settings.from_env({**BASE, "MEDIAGATE_SECRET_KEY": "k"}).signing_secret == b"k"
