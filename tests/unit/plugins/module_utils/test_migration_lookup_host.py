"""The host side of the migration look-up (_migration_lookup.run, read_listing) against libvirt's in-process
test driver: the module's listing and its verdict on one source, by path and by name."""

import os

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import (  # noqa: E402
    read_listing,
    run,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import domain_name_for  # noqa: E402
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

URI = "test:///default"
VALIDATED_AT = "2026-11-23T12:00:00Z"


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule({"uri": URI, "source_path": None, "name": None}, **options)


@pytest.fixture
def host(tmp_path):
    """The test driver with one validated migration of an OVA in tmp_path (and its own domain "test")."""
    # Holding a connection keeps the test driver's state for the connections run() opens and closes.
    conn = libvirt.open(URI)
    source = tmp_path / "web01.ova"
    source.write_bytes(b"ova")
    defined = []

    def define(name, source_path, phase="validated"):
        meta = meta_xml.new_metadata(phase=phase, spec_digest="d", config_digest="c",
                                     source=meta_xml.source_fingerprint({"type": "ova", "path": source_path}),
                                     volumes=[], extra={})
        if phase == "validated":
            meta = meta_xml.mark_validated(meta, VALIDATED_AT)
        conn.defineXML("<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os>"
                       "<metadata>%s</metadata></domain>" % (name, meta_xml.to_xml(meta)))
        defined.append(name)

    define("web01", str(source))
    yield define, str(source)
    for name in defined:
        conn.lookupByName(name).undefine()
    conn.close()


def test_a_finished_migration_is_found_by_source_path_and_by_name(host):
    _define, source = host
    by_path = run(FakeModule(source_path=source))
    assert by_path == {"changed": False, "found": True, "complete": True, "name": "web01", "phase": "validated",
                       "running": False, "validated_at": VALIDATED_AT, "source_type": "ova", "source_changes": [],
                       "reason": "migrated and validated " + VALIDATED_AT}
    assert run(FakeModule(name="web01")) == by_path
    assert run(FakeModule(source_path=source, name="web01")) == by_path


def test_a_changed_source_or_an_unfinished_phase_is_not_complete(host):
    define, source = host
    os.utime(source, ns=(1, 1))
    changed = run(FakeModule(source_path=source))
    assert changed["found"] and not changed["complete"]
    assert changed["source_changes"] == ["modified since the migration"]
    other = os.path.join(os.path.dirname(source), "db01.ova")
    with open(other, "wb") as handle:
        handle.write(b"db")
    define("db01", other, phase="defined")
    unfinished = run(FakeModule(source_path=other))
    assert unfinished["name"] == "db01" and unfinished["reason"] == "the migration reached phase 'defined', not " \
                                                                    "'validated'"


def test_what_is_not_on_the_host_is_not_found(host):
    _define, source = host
    assert run(FakeModule(name="test"))["found"] is False, "a domain without v2kvm metadata is no migration"
    missing = run(FakeModule(name="nowhere"))
    assert missing["found"] is False and missing["reason"] == "no domain on this host was migrated from nowhere"
    assert run(FakeModule(source_path=source, name="test"))["found"] is False


def test_a_source_name_that_is_no_domain_name_is_looked_up_by_its_derived_name(host):
    define, source = host
    derived = domain_name_for("Web Server 01")
    assert derived != "Web Server 01"
    define(derived, source)
    found = run(FakeModule(name="Web Server 01"))
    assert found["complete"] and found["name"] == derived


def test_without_a_source_the_host_lists_every_migration_the_same_way_as_read_listing(host):
    _define, source = host
    listing = run(FakeModule())
    assert set(listing) == {"changed", "migrations"}
    (record,) = listing["migrations"]
    assert record["name"] == "web01" and record["running"] is False
    assert record["metadata"]["phase"] == "validated" and record["source_realpath"] == os.path.realpath(source)
    stat = os.stat(source)
    assert record["source_stat"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    assert read_listing(URI) == listing["migrations"]


def test_an_unreachable_host_fails_naming_the_fix():
    with pytest.raises(Failed) as failed:
        run(FakeModule(uri="nosuchdriver:///system"))
    assert failed.value.result["msg"].startswith("cannot open libvirt URI nosuchdriver:///system")
