"""Input URLs: refused at submit for the wrong scheme or a private address literal, and after DNS
for names that resolve to private addresses."""

from __future__ import annotations

import pytest

from app.core.errors import InvalidRequestError
from app.core.urls import check_resolves_public, check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "ftp://example.com/a.png",
        "https://127.0.0.1/a.png",
        "https://10.1.2.3/a.png",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/a.png",
        "https://localhost/a.png",
        "https:///nohost",
    ],
)
def test_refused_without_dns(url: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_url(url, "input.image", allow_private=False)
    assert refused.value.param == "input.image"


def test_public_https_passes_and_the_setting_allows_private() -> None:
    check_url("https://images.example.com/a.png", "input.image", allow_private=False)
    check_url("http://127.0.0.1:9000/a.png", "input.image", allow_private=True)


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    with pytest.raises(InvalidRequestError):
        await check_resolves_public("https://localhost./a.png", "input.image")
    with pytest.raises(InvalidRequestError):
        await check_resolves_public("https://no-such-host.invalid/a.png", "input.image")
