"""The API process's cache of keys that authenticated lately, by token hash: what lets a request
skip the key's row. The keys domain fills it and announces changes (`app.keys.service`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.platform.tables import VirtualKey


class KeyCache:
    """Keys that authenticated lately, by token hash, so that a request does not read the key's
    row: kept `ttl` seconds at most, and dropped at once when the key changes (`announce_change`
    on any process; the API's event hub hands the notice to `on_notice`) or when notices may have
    been missed (`on_notice(None)`: the hub lost Redis). Used only while `live()` says notices
    arrive. A request that writes on the key's behalf still re-reads its row under a lock
    (`lock_key`), so a copy a moment old can never let a revoked key write. Cached keys are
    shared between requests: read them, never change them."""

    MAX_ENTRIES = 100_000

    def __init__(self, ttl_seconds: float, live: Callable[[], bool] = lambda: False) -> None:
        self.ttl = ttl_seconds
        self.live = live
        self._by_digest: dict[str, tuple[float, VirtualKey]] = {}
        self.generation = 0
        """Moves on every change notice: a row read before a notice is not cached after it."""
        self.known: set[str] = set()
        """Hashes of tokens that are (or were) keys: the active keys' at start, and every one
        that authenticated here since. Such a token is always looked up, however many failed
        sign-ins its address made (only unknown tokens are refused early), and it is no secret
        that helps a guesser: a token is in it only if it is a key."""

    def get(self, digest: str) -> VirtualKey | None:
        found = self._by_digest.get(digest)
        if found is None or not self.live():
            return None
        if found[0] < time.monotonic():
            del self._by_digest[digest]
            return None
        return found[1]

    def put(self, digest: str, key: VirtualKey, generation: int) -> None:
        """Cache `key`, read from the database when `generation` was current."""
        if generation != self.generation or self.ttl <= 0 or not self.live():
            return
        if len(self._by_digest) >= self.MAX_ENTRIES:
            self._by_digest.clear()
        self._by_digest[digest] = (time.monotonic() + self.ttl, key)

    def know(self, digest: str) -> None:
        if len(self.known) < self.MAX_ENTRIES:
            self.known.add(digest)

    def on_notice(self, key_id: bytes | None) -> None:
        """A key changed (its id; a new key's notice, `id:hash`, says its hash too, which this
        process then knows), or, with None, notices may have been missed."""
        self.generation += 1
        if key_id is None:
            self._by_digest.clear()
            return
        changed, _, digest = key_id.decode().partition(":")
        if digest:
            self.know(digest)
        for digest, (_, key) in list(self._by_digest.items()):
            if key.id == changed:
                del self._by_digest[digest]
