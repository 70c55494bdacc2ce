"""The API process's garbage collector: start-up objects frozen, collections less often (a full
collection over 10,000 streams' objects stopped the event loop for 620-670 ms; app/cli.py)."""

from __future__ import annotations

import gc

from litestar import Litestar

from app import cli


def test_the_api_freezes_its_start_up_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        api = Litestar([])
        assert cli._settled(api) is api
        assert gc.get_threshold() == cli.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert cli.GC_THRESHOLDS[0] > before[0] and cli.GC_THRESHOLDS[2] > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
