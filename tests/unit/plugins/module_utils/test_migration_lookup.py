"""The migration verdict from a host's listing: only an exact, complete answer is taken from it."""

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import (
    file_stat,
    verdict,
    verdict_from_listing,
)


def _record(name, path, phase="validated", stat=None, recorded=None):
    recorded = recorded or file_stat(path)
    return {"name": name, "running": True,
            "metadata": {"phase": phase, "validated_at": "2026-11-23T12:00:00Z",
                         "source": {"type": "ova", "path": path, "size": recorded.get("size"),
                                    "mtime_ns": recorded.get("mtime_ns")}},
            "source_realpath": os.path.realpath(path), "source_stat": stat or file_stat(path)}


def test_a_complete_migration_is_answered_from_the_listing(tmp_path):
    source = tmp_path / "web01.ova"
    source.write_bytes(b"ova")
    listing = [_record("web01", str(source)), _record("db01", str(tmp_path / "db01.ova"), stat={"error": "gone"})]
    answer = verdict_from_listing(listing, str(source))
    assert answer["complete"] and answer["name"] == "web01" and answer["running"] is True
    assert answer["source_type"] == "ova", "a re-run can show the kind of source without reading it"


def test_anything_short_of_complete_is_left_to_the_host(tmp_path):
    source = tmp_path / "web01.ova"
    source.write_bytes(b"ova")
    before = file_stat(str(source))
    os.utime(source, ns=(1, 1))
    changed = [_record("web01", str(source), recorded=before)]
    assert verdict(changed, str(source))["source_changes"] == ["modified since the migration"]
    assert verdict_from_listing(changed, str(source)) is None
    assert verdict_from_listing([_record("web01", str(source), phase="defined")], str(source)) is None
    assert verdict_from_listing([], str(source)) is None
    # Two domains from one source: ambiguous, the host says so with the names.
    twice = [_record("web01", str(source)), _record("web01-copy", str(source))]
    assert verdict_from_listing(twice, str(source)) is None
    assert "web01, web01-copy" in verdict(twice, str(source))["reason"]


def test_a_path_that_is_not_the_recorded_real_path_is_left_to_the_host(tmp_path):
    source = tmp_path / "web01.ova"
    source.write_bytes(b"ova")
    link = tmp_path / "link.ova"
    link.symlink_to(source)
    listing = [_record("web01", str(source))]
    # Only the host can resolve the link; the listing must not guess.
    assert verdict_from_listing(listing, str(link)) is None
    assert verdict_from_listing(listing, os.path.join(str(tmp_path), ".", "web01.ova")) is None


def test_by_name_for_sources_that_are_not_files():
    record = {"name": "app01", "running": False,
              "metadata": {"phase": "validated", "validated_at": "2026-11-23T12:00:00Z",
                           "source": {"type": "vsphere", "path": None}}}
    assert verdict_from_listing([record], None, "app01")["complete"] is True
    assert verdict_from_listing([record], None, "app02") is None
