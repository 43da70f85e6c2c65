"""The libvirt adapter against libvirt's own in-process test driver (test:///default): real libvirt
objects and errors, no daemon needed."""

import os

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _libvirt_adapter as lv  # noqa: E402

DOMAIN = """<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os>
<devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/images/a.qcow2'/>
    <target dev='vda' bus='virtio'/></disk>
  <disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='{pool}' volume='b.raw'/>
    <target dev='vdb' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><source file='/images/tools.iso'/><target dev='sda' bus='sata'/></disk>
</devices></domain>"""


def define_pool(conn, name, path, pool_type="dir"):
    pool = conn.storagePoolDefineXML("<pool type='%s'><name>%s</name><target><path>%s</path></target></pool>"
                                     % (pool_type, name, path), 0)
    pool.create(0)
    return pool


def test_lookups_answer_none_for_what_does_not_exist_and_the_object_otherwise(conn):
    assert lv.lookup_domain(conn, "no-such-vm") is None
    assert lv.lookup_domain(conn, "test").name() == "test"
    assert lv.lookup_pool(conn, "no-such-pool") is None
    assert lv.lookup_pool(conn, "default-pool").name() == "default-pool"
    assert lv.lookup_volume_by_path(conn, "/nowhere/x.qcow2") is None


def test_pool_for_path_takes_the_pool_of_the_files_directory_also_through_a_symlink(conn, tmp_path):
    real = tmp_path / "images"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    pool = define_pool(conn, "imgs", str(real))
    assert lv.pool_for_path(conn, str(real / "web01.qcow2")).name() == "imgs"
    assert lv.pool_for_path(conn, str(tmp_path / "link" / "web01.qcow2")).name() == "imgs"
    assert lv.pool_for_path(conn, str(tmp_path / "elsewhere" / "web01.qcow2")) is None
    pool.destroy()  # an inactive pool holds nothing libvirt could refresh
    assert lv.pool_for_path(conn, str(real / "web01.qcow2")) is None


def test_domain_disks_lists_disks_not_cdroms_and_resolves_pool_volumes(conn):
    conn.storagePoolLookupByName("default-pool").createXML(
        "<volume><name>b.raw</name><capacity>1048576</capacity><target><format type='raw'/></target></volume>", 0)
    xml = DOMAIN.format(name="adapter-vm", pool="default-pool")
    with_conn = lv.domain_disks(xml, conn)
    assert [(d["target"], d["path"], d["format"]) for d in with_conn] == [
        ("vda", "/images/a.qcow2", "qcow2"), ("vdb", "/default-pool/b.raw", "raw")]
    assert [d["path"] for d in lv.domain_disks(xml)] == ["/images/a.qcow2"]


def test_volume_format_reads_what_libvirt_records(conn):
    vol = conn.storagePoolLookupByName("default-pool").createXML(
        "<volume><name>c.qcow2</name><capacity>1048576</capacity><target><format type='qcow2'/></target></volume>", 0)
    assert lv.volume_format(vol) == "qcow2"


def test_parse_xml_reads_libvirt_output(conn):
    assert lv.parse_xml(conn.lookupByName("test").XMLDesc(0)).findtext("name") == "test"
