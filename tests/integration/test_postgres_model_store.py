"""The shared model store's contract on a real PostgreSQL: the same tests as on SQLite
(tests/unit/test_model_store.py), with ``shared_url`` a fresh PostgreSQL database."""

from __future__ import annotations

import pytest

from crypto_predictor.registry.sql_store import SqlStore
from tests.unit.test_model_store import (  # noqa: F401  (collected here, against PostgreSQL)
    test_a_different_bundle_under_a_taken_name_is_refused, test_a_listing_without_metrics_reads_each_manifest_once,
    test_a_tampered_local_copy_is_refused_before_an_alias_moves,
    test_a_version_pushed_on_one_host_is_fetched_verified_on_another, test_alias_switch_history_and_rollback,
    test_an_altered_blob_is_refused_and_nothing_is_left_behind,
    test_an_altered_manifest_row_or_a_path_outside_the_copy_is_refused,
    test_concurrent_alias_writers_lose_and_duplicate_nothing,
    test_hosts_with_their_own_directories_never_get_the_same_version, test_identical_files_are_stored_once,
    test_unknown_versions_and_aliases_list_what_exists)


@pytest.fixture()
def shared_url(postgres_url) -> str:
    return postgres_url


@pytest.fixture()
def store(tmp_path, shared_url):
    return SqlStore(shared_url, tmp_path / "copies")
