from __future__ import annotations

import pytest

from app.platform.settings import Settings, SettingsError

BASE = {"MEDIAGATE_ADMIN_KEY": "a" * 20, "MEDIAGATE_SECRET_KEY": "s" * 32}


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


def test_signing_secret_is_required_and_never_derived_from_the_admin_key() -> None:
    """One signed link must not let anyone guess the admin key offline: outside dev mode the
    link secret is its own setting, long and different from the admin key."""
    admin = {"MEDIAGATE_ADMIN_KEY": "a" * 20}
    with pytest.raises(SettingsError, match="MEDIAGATE_SECRET_KEY is required"):
        Settings.from_env(admin)
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({**admin, "MEDIAGATE_SECRET_KEY": "k" * 31})
    with pytest.raises(SettingsError, match="differ"):
        Settings.from_env({"MEDIAGATE_ADMIN_KEY": "a" * 40, "MEDIAGATE_SECRET_KEY": "a" * 40})
    assert Settings.from_env(BASE).signing_secret == b"s" * 32
    dev = Settings.from_env({"MEDIAGATE_ADMIN_KEY": "a" * 20}, dev=True)
    assert len(dev.signing_secret) == 32 and b"a" * 20 not in dev.signing_secret


def test_the_configuration_page_lists_every_setting_under_its_concern() -> None:
    """The configuration tables are the settings: every variable, once, under its group's heading
    (and nothing the code does not read)."""
    import re
    from pathlib import Path

    from app.platform.settings import ENV_PREFIX, GROUPS

    readme = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for part in section.split("\n#### ")[1:]:
        title = part.split(":", 1)[0]
        rows = [line.split("|")[1] for line in part.splitlines() if line.startswith("| `")]
        listed[title] = {name for row in rows for name in re.findall(r"`(MEDIAGATE_\w+)`", row)}
    expected = {
        group.__name__.removesuffix("Settings"): {
            ENV_PREFIX + name.upper()
            for name in group.__dataclass_fields__  # type: ignore[attr-defined]
        }
        for group in GROUPS
    }
    assert listed == expected
