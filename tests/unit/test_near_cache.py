"""NearCache: each worker's short-lived copy of prediction cache entries."""

from __future__ import annotations

import pytest

from crypto_predictor.api.near_cache import NearCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_entries_expire_after_their_seconds():
    clock = Clock()
    near = NearCache(5, 10, clock=clock)
    near.set("a", ("json", 1))
    near.set("b", "short", seconds=1)  # the shared cache's own timeout is shorter: that wins
    clock.now += 0.9
    assert near.get("a") == ("json", 1) and near.get("b") == "short"
    clock.now += 0.2
    assert near.get("b") is None and near.get("a") == ("json", 1)
    clock.now += 4
    assert near.get("a") is None and len(near) == 0  # an expired entry is dropped when asked


def test_never_longer_than_its_own_limit_and_none_is_not_kept():
    clock = Clock()
    near = NearCache(2, 10, clock=clock)
    near.set("a", 1, seconds=3600)
    near.set("none", None)
    near.set("zero", 1, seconds=0)
    clock.now += 2.01
    assert near.get("a") is None and near.get("none") is None and near.get("zero") is None


def test_oldest_entries_go_first_past_max_entries():
    near = NearCache(60, 3)
    for key in "abcd":
        near.set(key, key.upper())
    assert len(near) == 3 and near.get("a") is None and near.get("d") == "D"
    near.set("b", "again")  # written again: now the newest
    near.set("e", "E")
    assert near.get("c") is None and near.get("b") == "again"


def test_clear_drops_everything():
    near = NearCache(60, 3)
    near.set("a", 1)
    near.clear()
    assert near.get("a") is None and len(near) == 0


@pytest.mark.parametrize("seconds, entries", [(0, 10), (5, 0), (-1, 10)])
def test_refuses_settings_that_keep_nothing(seconds, entries):
    with pytest.raises(ValueError):
        NearCache(seconds, entries)
