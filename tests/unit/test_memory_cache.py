"""The in-process response cache stays under its byte budget, oldest entries first out."""

from crypto_predictor.api.memory_cache import BoundedMemoryCache


def test_the_total_stays_under_the_budget_and_the_oldest_go_first():
    cache = BoundedMemoryCache(max_bytes=40_000, threshold=500, default_timeout=0)
    for i in range(20):
        assert cache.set(f"k{i}", "x" * 5_000)
        assert cache.stored_bytes() <= 40_000
    kept = [i for i in range(20) if cache.get(f"k{i}") is not None]
    assert kept == list(range(20 - len(kept), 20)) and 5 <= len(kept) < 8  # the newest, in order
    assert cache.get("k19") == "x" * 5_000


def test_an_entry_over_a_quarter_of_the_budget_is_not_kept():
    cache = BoundedMemoryCache(max_bytes=40_000, threshold=500, default_timeout=0)
    assert cache.set("small", "s" * 100)
    assert cache.set("huge", "h" * 20_000) is False
    assert cache.get("huge") is None and cache.get("small") == "s" * 100


def test_the_entry_count_bound_still_holds():
    cache = BoundedMemoryCache(max_bytes=10**9, threshold=10, default_timeout=0)
    for i in range(50):
        cache.set(f"k{i}", i)
    assert len(cache._cache) <= 11
