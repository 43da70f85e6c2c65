"""The domain reconciler against libvirt's in-process test driver (test:///default): real libvirt
domains, pools and errors, real disk files and qemu-img, no daemon.

What the test driver cannot do is said where it matters: it refuses the NVRAM and checkpoint undefine
flags (so the absent cases undefine with the flags it knows), and its pools do not scan their directory
(so a disk in a pool gets its format from qemu-img, not from a libvirt volume)."""

import json
import os
import subprocess
import uuid

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_reconciler as rec  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._convert_state import sidecar_path  # noqa: E402
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

DEFAULTS = dict(
    uri="test:///default", name=None, spec=None, disks=None, disk_format=None, network_map={},
    default_network=None, keep_macs=True, disk_bus="virtio", nic_model="virtio", domain_type="qemu",
    machine=None, cpu_mode="auto", firmware=None, serial_log=None, metadata={}, state="present",
    remove_volumes=False, autostart=False, only_unfinished=False,
)


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule(DEFAULTS, **options)


@pytest.fixture
def name(conn):
    # test:///default is one shared state per process: every test uses a domain name of its own.
    vm = "rec-%s" % uuid.uuid4().hex[:8]
    yield vm
    dom = rec.lookup_domain(conn, vm)
    if dom is not None:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


@pytest.fixture
def test_driver_undefine(monkeypatch):
    # The test driver refuses VIR_DOMAIN_UNDEFINE_NVRAM and _CHECKPOINTS_METADATA; qemu takes all four.
    monkeypatch.setattr(rec, "UNDEFINE_FLAG_NAMES", rec.UNDEFINE_FLAG_NAMES[:2])


def qcow2(path, owned=False):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    if owned:
        with open(sidecar_path(str(path)), "w") as fh:
            json.dump({"dest": str(path)}, fh)
    return str(path)


def spec_for(vm, source="/data/web01.ova", memory_mib=64, disks=1):
    return {
        "name": vm, "source": {"type": "ova", "path": source}, "vcpus": 1, "cores_per_socket": 1,
        "memory_mib": memory_mib, "firmware": "bios", "secure_boot": False,
        "guest_os": {"family": "linux"}, "disks": [{"id": "d%d" % i} for i in range(disks)],
        "nics": [{"mac": "00:50:56:aa:bb:cc", "network": "VM Network"}], "annotation": "",
    }


def present(conn, vm, disks, check_mode=False, diff=False, **params):
    params.setdefault("spec", spec_for(vm, disks=len(disks)))
    params.setdefault("network_map", {"VM Network": "user"})
    module = FakeModule(check_mode=check_mode, diff=diff, disks=disks, **params)
    return rec.DomainReconciler(module, conn).run()


def absent(conn, vm, check_mode=False, diff=False, **params):
    module = FakeModule(check_mode=check_mode, diff=diff, name=vm, state="absent", **params)
    return rec.DomainReconciler(module, conn).run(), module


def recorded(conn, vm):
    return meta_xml.from_domain_xml(conn.lookupByName(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def test_defines_the_domain_with_its_metadata_then_changes_nothing_the_second_time(conn, name, tmp_path):
    disk = qcow2(tmp_path / "web-0.qcow2", owned=True)
    first = present(conn, name, [disk], metadata={"wave": 3})
    assert first["changed"] and first["created"] and first["uuid"] == conn.lookupByName(name).UUIDString()
    meta = recorded(conn, name)
    assert meta["phase"] == "defined" and meta["extra"] == {"wave": 3}
    assert meta["config_digest"] == first["config_digest"]
    assert meta["volumes"] == [{"path": disk, "pool": None, "name": None, "owned": True}]
    assert "<source file='%s'/>" % disk in conn.lookupByName(name).XMLDesc(0)

    second = present(conn, name, [disk], metadata={"wave": 3})
    assert not second["changed"] and not second["created"] and not second["drift"]
    assert recorded(conn, name) == meta  # timestamps too: a no-op leaves them alone


def test_check_mode_predicts_the_definition_and_defines_nothing(conn, name, tmp_path):
    disk = qcow2(tmp_path / "web-0.qcow2")
    result = present(conn, name, [disk], check_mode=True)
    assert result["changed"] and result["created"] and result["uuid"] is None
    assert "<name>%s</name>" % name in result["xml"]
    assert rec.lookup_domain(conn, name) is None


def test_check_mode_on_a_changed_spec_reports_the_change_and_keeps_the_old_definition(conn, name, tmp_path):
    disk = qcow2(tmp_path / "web-0.qcow2")
    present(conn, name, [disk])
    before = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    result = present(conn, name, [disk], check_mode=True, spec=spec_for(name, memory_mib=128))
    assert result["changed"] and not result["created"]
    assert conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before


def test_a_disk_in_a_pool_is_attached_as_its_volume_and_check_mode_does_not_need_the_file(conn, name, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    pool = conn.storagePoolDefineXML("<pool type='dir'><name>%s-pool</name><target><path>%s</path></target></pool>"
                                     % (name, images), 0)
    pool.create(0)
    try:
        disk = qcow2(images / "web-0.qcow2")
        result = present(conn, name, [disk])
        assert "<source pool='%s-pool' volume='web-0.qcow2'/>" % name in conn.lookupByName(name).XMLDesc(0)
        assert result["metadata"]["volumes"][0] == {"path": disk, "pool": "%s-pool" % name,
                                                    "name": "web-0.qcow2", "owned": False}
        module = FakeModule(check_mode=True, spec=spec_for(name), disks=[str(images / "later.raw")])
        guessed = rec.resolve_disks(module, conn)
        assert guessed[0]["format"] == "raw" and guessed[0]["pool"] == "%s-pool" % name
        assert "does not exist yet" in module.warnings[0]
    finally:
        pool.destroy()
        pool.undefine()


def test_a_missing_disk_or_a_missing_name_fails_with_the_fix(conn, name, tmp_path):
    with pytest.raises(Failed, match="convert the source disk first"):
        present(conn, name, [str(tmp_path / "nowhere.qcow2")])
    with pytest.raises(Failed, match="set the name option"):
        rec.DomainReconciler(FakeModule(spec={"disks": []}, disks=[]), conn).run()
    with pytest.raises(Failed, match="network_map"):
        present(conn, name, [qcow2(tmp_path / "web-0.qcow2")], network_map={})


def test_metadata_change_alone_keeps_the_phase_reached_and_drift_is_seen(conn, name, tmp_path):
    disk = qcow2(tmp_path / "web-0.qcow2")
    present(conn, name, [disk], metadata={"phase": "validated"})
    kept = present(conn, name, [disk], metadata={"wave": 4})
    assert kept["changed"] and recorded(conn, name)["phase"] == "validated"

    # Someone edits the live definition: the same metadata, another memory size.
    edited = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace(
        "<memory unit='KiB'>65536</memory>", "<memory unit='KiB'>131072</memory>")
    conn.defineXML(edited)
    drifted = present(conn, name, [disk], metadata={"wave": 4})
    assert drifted["changed"] and drifted["drift"]
    assert recorded(conn, name)["phase"] == "defined"  # a new definition is not validated yet
    assert not present(conn, name, [disk], metadata={"wave": 4})["changed"]


def test_autostart_and_restart_required_follow_the_running_domain(conn, name, tmp_path):
    disk = qcow2(tmp_path / "web-0.qcow2")
    present(conn, name, [disk])
    on = present(conn, name, [disk], autostart=True)
    assert on["changed"] and conn.lookupByName(name).autostart() == 1
    assert not present(conn, name, [disk], autostart=True)["changed"]
    conn.lookupByName(name).create()
    bigger = present(conn, name, [disk], autostart=True, spec=spec_for(name, memory_mib=128))
    assert bigger["changed"] and bigger["restart_required"]


def test_diff_shows_the_managed_settings_before_and_after(conn, name, tmp_path):
    disk = qcow2(tmp_path / "web-0.qcow2")
    created = present(conn, name, [disk], diff=True)
    assert created["diff"]["before"] == "" and "memory_kib: 65536" in created["diff"]["after"]
    changed = present(conn, name, [disk], diff=True, spec=spec_for(name, memory_mib=128))
    assert "memory_kib: 65536" in changed["diff"]["before"]
    assert "memory_kib: 131072" in changed["diff"]["after"]
    assert "phase: defined" in changed["diff"]["before"]


def test_absent_removes_the_domain_and_only_the_volumes_v2kvm_created(conn, name, tmp_path, test_driver_undefine):
    owned = qcow2(tmp_path / "web-0.qcow2", owned=True)
    foreign = qcow2(tmp_path / "web-1.qcow2")
    present(conn, name, [owned, foreign], spec=spec_for(name, disks=2))

    predicted, _module = absent(conn, name, check_mode=True, remove_volumes=True, diff=True)
    assert predicted["changed"] and predicted["removed_volumes"] == [owned] and predicted["phase"] == "defined"
    assert predicted["diff"]["after"] == "" and "disk[0]" in predicted["diff"]["before"]
    assert rec.lookup_domain(conn, name) is not None and os.path.exists(owned)

    result, _module = absent(conn, name, remove_volumes=True)
    assert result["changed"] and result["removed_volumes"] == [owned]
    assert rec.lookup_domain(conn, name) is None
    assert not os.path.exists(owned) and not os.path.exists(sidecar_path(owned))
    assert os.path.exists(foreign)
    again, _module = absent(conn, name, remove_volumes=True)
    assert not again["changed"] and again["uuid"] is None


def test_absent_destroys_a_running_domain_and_warns_when_it_has_no_metadata(conn, name, test_driver_undefine):
    conn.defineXML("<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os></domain>"
                   % name).create()
    result, module = absent(conn, name, remove_volumes=True)
    assert result["changed"] and result["phase"] is None and result["removed_volumes"] == []
    assert "carries no v2kvm metadata" in module.warnings[0]
    assert rec.lookup_domain(conn, name) is None


def test_only_unfinished_keeps_finished_foreign_and_unmarked_domains(conn, name, tmp_path, test_driver_undefine):
    disk = qcow2(tmp_path / "web-0.qcow2")
    spec = spec_for(name)
    present(conn, name, [disk], spec=spec, metadata={"phase": "validated"})
    kept, _module = absent(conn, name, only_unfinished=True, spec=spec)
    assert not kept["changed"] and kept["kept"].startswith("a finished migration")
    other, _module = absent(conn, name, only_unfinished=True, spec=spec_for(name, source="/data/other.ova"))
    assert not other["changed"] and "another source (ova /data/web01.ova)" in other["kept"]
    assert rec.lookup_domain(conn, name) is not None

    present(conn, name, [disk], spec=spec, metadata={"phase": "converted"})
    removed, _module = absent(conn, name, only_unfinished=True, spec=spec)
    assert removed["changed"] and removed["kept"] is None and removed["phase"] == "converted"
    assert rec.lookup_domain(conn, name) is None
    assert rec.unfinished_refusal(None, spec).startswith("it carries no v2kvm migration metadata")


def test_the_undefine_flags_take_nvram_and_checkpoints_too():
    flags = rec.undefine_flags()
    for flag in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                 "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
        assert flags & getattr(libvirt, flag)
