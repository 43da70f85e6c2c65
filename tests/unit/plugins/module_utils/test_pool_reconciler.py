"""The storage pool reconciler against libvirt's in-process test driver (test:///default): real libvirt
pools and errors, no daemon. The test driver's pools are virtual: building one does not create its
directory, so the cases here use directories that exist; and it refuses VIR_STORAGE_XML_INACTIVE,
so the pool's XML is read without it here (a dir pool's target path is the same in both)."""

import os
import uuid

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _pool_reconciler as rec  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import lookup_pool  # noqa: E402
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule(dict(uri="test:///default", path=None, state="present"), **options)


@pytest.fixture
def test_driver_pool_xml(monkeypatch):
    monkeypatch.setattr(rec, "inactive_xml_flags", lambda: 0)


@pytest.fixture
def name(conn, test_driver_pool_xml):
    # test:///default is one shared state per process: every test uses a pool name of its own.
    pool_name = "rec-%s" % uuid.uuid4().hex[:8]
    yield pool_name
    pool = lookup_pool(conn, pool_name)
    if pool is not None:
        if pool.isActive():
            pool.destroy()
        pool.undefine()


def run(conn, check_mode=False, diff=False, **params):
    return rec.PoolReconciler(FakeModule(check_mode=check_mode, diff=diff, **params), conn).run()


def test_present_defines_starts_and_autostarts_the_pool_then_changes_nothing(conn, name, tmp_path):
    first = run(conn, name=name, path=str(tmp_path) + "/./", diff=True)
    assert first["changed"] and first["path"] == str(tmp_path)
    pool = conn.storagePoolLookupByName(name)
    assert pool.isActive() and pool.autostart()
    assert rec.state_of(pool) == rec.wanted_state(str(tmp_path))
    assert first["diff"] == {"before": {"state": "absent"}, "after": rec.wanted_state(str(tmp_path))}
    assert isinstance(first["capacity"], int) and isinstance(first["available"], int)

    second = run(conn, name=name, path=str(tmp_path))
    assert not second["changed"] and second["path"] == str(tmp_path)


def test_check_mode_predicts_a_new_pool_from_the_file_system_and_defines_nothing(conn, name, tmp_path):
    result = run(conn, check_mode=True, name=name, path=str(tmp_path / "not" / "yet"))
    assert result["changed"] and result["path"] == str(tmp_path / "not" / "yet")
    assert result["capacity"] == os.statvfs(str(tmp_path)).f_blocks * os.statvfs(str(tmp_path)).f_frsize
    assert lookup_pool(conn, name) is None


def test_an_inactive_pool_is_started_and_check_mode_leaves_it_stopped(conn, name, tmp_path):
    conn.storagePoolDefineXML(rec.pool_xml(name, str(tmp_path)), 0)
    predicted = run(conn, check_mode=True, name=name, path=str(tmp_path))
    assert predicted["changed"] and not conn.storagePoolLookupByName(name).isActive()
    started = run(conn, name=name, path=str(tmp_path))
    assert started["changed"] and conn.storagePoolLookupByName(name).isActive()


def test_a_pool_of_another_path_or_type_is_refused_not_moved(conn, name, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    run(conn, name=name, path=str(tmp_path))
    with pytest.raises(Failed, match="already exists for %s, not %s" % (tmp_path, other)):
        run(conn, name=name, path=str(other))
    assert rec.state_of(conn.storagePoolLookupByName(name))["path"] == str(tmp_path)
    # test:///default only ships a dir pool: define a logical one (never started, so no volume group needed).
    conn.storagePoolDefineXML("<pool type='logical'><name>%s-lvm</name><source><name>vg0</name></source>"
                              "<target><path>/dev/vg0</path></target></pool>" % name, 0)
    try:
        with pytest.raises(Failed, match="exists with type logical, not dir"):
            run(conn, name="%s-lvm" % name, path="/dev/vg0")
    finally:
        conn.storagePoolLookupByName("%s-lvm" % name).undefine()


def test_absent_removes_the_definition_only_and_check_mode_nothing(conn, name, tmp_path):
    keep = tmp_path / "disk.qcow2"
    keep.write_bytes(b"data")
    run(conn, name=name, path=str(tmp_path))
    predicted = run(conn, check_mode=True, name=name, state="absent", diff=True)
    assert predicted["changed"] and predicted["diff"]["after"] == {"state": "absent"}
    assert predicted["diff"]["before"]["path"] == str(tmp_path)
    assert lookup_pool(conn, name) is not None

    removed = run(conn, name=name, state="absent")
    assert removed["changed"] and removed["path"] is None and removed["capacity"] is None
    assert lookup_pool(conn, name) is None and keep.read_bytes() == b"data"
    assert not run(conn, name=name, state="absent")["changed"]


def test_the_pool_is_read_as_defined_not_as_running():
    assert rec.inactive_xml_flags() == libvirt.VIR_STORAGE_XML_INACTIVE
