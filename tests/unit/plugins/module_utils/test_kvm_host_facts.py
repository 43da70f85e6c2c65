"""The kvm_host_info module's entry (_kvm_host_facts.run) against libvirt's in-process test driver: capacity,
what running and defined domains claim, their disks, pools, and the module's own options in the facts."""

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_host_facts import run  # noqa: E402
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

URI = "test:///default"
STOPPED = """<domain type='test'><name>stopped01</name><memory unit='MiB'>512</memory><vcpu>3</vcpu>
<os><type>hvm</type></os><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/images/stopped01.qcow2'/>
    <target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><source file='/images/tools.iso'/><target dev='sda' bus='sata'/></disk>
</devices></domain>"""


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule({"uri": URI, "name": None, "maintenance": False, "pool": None,
                                  "probe_domain_type": False}, **options)


@pytest.fixture
def conn():
    # Holding a connection keeps the test driver's state for the connection run() opens and closes.
    c = libvirt.open(URI)
    dom = c.defineXML(STOPPED)
    yield c
    dom.undefine()
    c.close()


def test_facts_count_running_domains_as_allocated_and_every_domain_as_defined(conn):
    result = run(FakeModule(name="kvm07", maintenance=True, pool="fast"))
    assert result["changed"] is False
    host = result["host"]
    assert (host["name"], host["uri"], host["maintenance"], host["pool"]) == ("kvm07", URI, True, "fast")
    assert host["hostname"] == conn.getHostname() and host["cpus"] == conn.getInfo()[2]
    domains = {d["name"]: d for d in host["domains"]}
    running, stopped = domains["test"], domains["stopped01"]
    assert running["active"] and running["state"] == "running"
    assert (stopped["active"], stopped["state"], stopped["vcpus"], stopped["memory_mib"]) == (False, "shutoff", 3, 512)
    assert host["vcpus_allocated"] == running["vcpus"]
    assert host["memory_allocated_mib"] == running["memory_mib"]
    assert host["vcpus_defined"] == running["vcpus"] + 3
    assert host["memory_defined_mib"] == running["memory_mib"] + 512
    # Disks, not CD-ROMs.
    assert stopped["disks"] == [{"target": "vda", "path": "/images/stopped01.qcow2", "format": "qcow2",
                                 "type": "file"}]
    (pool,) = [p for p in host["pools"] if p["name"] == "default-pool"]
    assert pool["active"] and pool["type"] == "dir" and pool["available_bytes"] > 0
    assert host["domain_types_offered"] == ["test"]
    assert host["domain_type"] is None and host["domain_type_reason"] is None


def test_the_node_name_defaults_to_the_hostname_libvirt_reports(conn):
    host = run(FakeModule())["host"]
    assert host["name"] == conn.getHostname() and host["maintenance"] is False and host["pool"] is None


def test_an_unreachable_host_fails_naming_the_fix():
    with pytest.raises(Failed) as failed:
        run(FakeModule(uri="nosuchdriver:///system"))
    assert failed.value.result["msg"].startswith("cannot open libvirt URI nosuchdriver:///system")
