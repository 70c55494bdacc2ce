"""Redis scripts name their keys and arguments (app/platform/lua.py): positions are computed,
never counted by hand, and a name that is used but not declared (or declared and unused, or
given no value) fails here rather than becoming a nil in Redis."""

from __future__ import annotations

import pytest

from app.platform.lua import Lua


def test_names_become_positions_across_parts() -> None:
    first = Lua("redis.call('SET', $a, $x)\n", keys=("a",), args=("x",))
    second = Lua("redis.call('SET', $b, $x .. $y)\n", keys=("b",), args=("y",))
    both = first + second
    assert both.text == (
        "redis.call('SET', KEYS[1], ARGV[1])\nredis.call('SET', KEYS[2], ARGV[1] .. ARGV[2])\n"
    )
    assert both.values({"a": "ka", "b": "kb", "x": 1, "y": 2}) == (["ka", "kb"], [1, 2])


def test_mistakes_fail_before_redis_sees_them() -> None:
    with pytest.raises(ValueError, match="twice"):
        Lua("$a", keys=("a",), args=("a",))
    with pytest.raises(KeyError):
        _ = Lua("redis.call('GET', $nobody)").text
    with pytest.raises(ValueError, match="never used"):
        _ = Lua("return 1", args=("x",)).text
    script = Lua("redis.call('GET', $a)", keys=("a",))
    with pytest.raises(ValueError, match="missing"):
        script.values({})
    with pytest.raises(ValueError, match="unknown"):
        script.values({"a": 1, "b": 2})


def test_the_platforms_scripts_know_nothing_of_batches() -> None:
    """The batch's part of a job's ending is the batches domain's (a hook), not the bus's."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "app" / "platform"
    for name in ("events.py", "lua.py"):
        assert "batch" not in (root / name).read_text().lower(), name


def test_every_script_of_ours_renders() -> None:
    from app.batches.events import _BATCH_ENDING
    from app.jobs.queue import _ENQUEUE_PRELUDE
    from app.platform.events import _PUBLISH, _RETURN

    assert "$" not in (_ENQUEUE_PRELUDE + _PUBLISH + _BATCH_ENDING + _RETURN).text
