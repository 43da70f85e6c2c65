"""The migration reconciler's decisions against two nodes of libvirt's in-process test driver.

Each node is its own ``test:///<file>.xml`` (a custom node file gives every connection a state of its own);
the reconciler gets the test's connections, so the test sees what it did. No migration can run on the test
driver: these tests cover what is decided before one would (already there, check mode, refusals, a stop).

A node file's test driver reports 0 bytes of free memory (a guest under 1 MiB, 0 MiB, fits; one of 8 GiB
does not) and 100 GiB in every pool (a disk of 200 GiB does not fit)."""

import json
import os
import signal

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_reconciler import (  # noqa: E402
    MigrationReconciler,
)
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

DOMAIN = """<domain type='test'><name>{name}</name><memory>{memory_kib}</memory><vcpu>1</vcpu>
<os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{pool_dir}/{name}.raw'/>
<target dev='vda'/></disk></devices></domain>"""
POOL = """<pool type='dir'><name>v2kvm</name><target><path>{pool_dir}</path></target>{volumes}</pool>"""
VOLUME = """<volume><name>{name}.raw</name><capacity>{size}</capacity><allocation>{size}</allocation>
<target><path>{pool_dir}/{name}.raw</path></target></volume>"""


def FakeModule(check_mode=False, **params):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule(dict(
        name="web01", nodes=NODES, source="a", target="b", mode="live", copy_storage="all",
        target_pool="v2kvm", migrate_uri=None, bandwidth_mib=None, max_downtime_ms=None,
        auto_converge=False, post_copy=False, post_copy_after=30, timeout=3600,
        shutdown_timeout=120, force_shutdown=False, start=True, validate_seconds=10,
        success_pattern="V2KVM-BOOT-OK|login:", failure_patterns=None,
        require_success_pattern=False, remove_source_storage=False, progress_file=None),
        check_mode=check_mode, **params)


NODES = [{"name": "a", "uri": "test:///node-a"}, {"name": "b", "uri": "test:///node-b"}]


def node_file(path, pool_dir, domains=(), pool=True):
    """A test-driver node file: ``domains`` [(name, memory KiB, disk bytes)], their disks in pool v2kvm."""
    volumes = "".join(VOLUME.format(name=name, size=size, pool_dir=pool_dir) for name, _memory, size in domains)
    body = "".join(DOMAIN.format(name=name, memory_kib=memory, pool_dir=pool_dir) for name, memory, _size in domains)
    if pool:
        body += POOL.format(pool_dir=pool_dir, volumes=volumes)
    path.write_text("<node>%s</node>" % body)
    return "test://%s" % path


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """cluster(source=[...], target=[...], **target options) -> {"a": conn, "b": conn}; the lock goes under tmp."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    opened = []

    def make(source=(), target=(), **target_options):
        conns = {"a": libvirt.open(node_file(tmp_path / "a.xml", "/pool-a", source)),
                 "b": libvirt.open(node_file(tmp_path / "b.xml", "/pool-b", target, **target_options))}
        opened.extend(conns.values())
        return conns

    yield make
    for conn in opened:
        conn.close()


def run(conns, check_mode=False, **params):
    by_uri = {"test:///node-a": conns["a"], "test:///node-b": conns["b"]}
    return MigrationReconciler(FakeModule(check_mode, **params), connect=by_uri.__getitem__).run()


def refusal(conns, **params):
    with pytest.raises(Failed) as failed:
        run(conns, **params)
    return failed.value.result


def where(conns, name="web01"):
    """{node: running?} for every node that defines ``name``."""
    found = {}
    for node, conn in conns.items():
        try:
            found[node] = bool(conn.lookupByName(name).isActive())
        except libvirt.libvirtError:
            continue
    return found


def samples(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


SMALL = ("web01", 512, 524288)


def test_a_vm_already_on_the_target_is_left_alone_and_reported_unchanged(cluster, tmp_path):
    conns = cluster(target=[SMALL])
    progress = str(tmp_path / "web01.progress")
    for _again in range(2):
        result = run(conns, progress_file=progress)
        assert result["changed"] is False and result["msg"] == "web01 is already on node b", result
        assert where(conns) == {"b": True}
    assert samples(progress)[-1]["stage"] == "done", "a reader sees the job ended"
    assert run(conns, check_mode=True)["changed"] is False


def test_check_mode_predicts_the_migration_and_touches_nothing(cluster, tmp_path):
    conns = cluster(source=[SMALL])
    progress = tmp_path / "web01.progress"
    for mode in ("live", "cold"):
        result = run(conns, check_mode=True, mode=mode, progress_file=str(progress))
        assert result["changed"] is True, result
        assert result["msg"] == "would %s-migrate web01 from a to b" % mode
        assert result["disk_bytes"] == 524288 and result["memory_mib"] == 0
        assert where(conns) == {"a": True}
        assert conns["b"].storagePoolLookupByName("v2kvm").listVolumes() == []
    assert not progress.exists(), "check mode writes no progress"
    assert not os.path.exists(tmp_path / "home" / ".ansible"), "check mode takes no lock"


@pytest.mark.parametrize("params, message", [
    (dict(target="a"), "Target node must be different from source node (both are a)"),
    (dict(nodes=NODES + [{"name": "a2", "uri": "test:///node-a"}], target="a2"),
     "Target node must be different from source node (both are a)"),
    (dict(target="c"), "Node c not found in cluster (known nodes: a, b)"),
    (dict(name="db01"), "VM db01 not found on node a"),
    (dict(success_pattern="("), "("),
])
def test_refusals_before_the_nodes_are_asked_anything_change_nothing(cluster, params, message):
    conns = cluster(source=[SMALL])
    for check_mode in (True, False):
        result = refusal(conns, check_mode=check_mode, **params)
        assert message in result["msg"] and result["changed"] is False, result
        assert where(conns) == {"a": True}


def test_a_live_migration_of_a_stopped_vm_is_refused_and_a_cold_one_is_not(cluster):
    conns = cluster(source=[SMALL])
    conns["a"].lookupByName("web01").destroy()
    result = refusal(conns)
    assert "VM must be running for live migration (web01 is shut off on node a; use mode=cold)" in result["msg"]
    assert run(conns, check_mode=True, mode="cold")["changed"] is True
    assert where(conns) == {"a": False}


def test_a_namesake_on_the_target_is_refused(cluster):
    conns = cluster(source=[SMALL], target=[SMALL])
    result = refusal(conns, check_mode=True)
    assert "a domain named web01 already exists on node b: remove or rename it first" in result["msg"]
    assert where(conns) == {"a": True, "b": True}


def test_not_enough_capacity_on_the_target_is_refused(cluster):
    conns = cluster(source=[("web01", 8 * 1024 * 1024, 524288)])
    result = refusal(conns, check_mode=True)
    assert "Not enough capacity on node b: the VM needs 8192 MiB of memory, 0 MiB are free" in result["msg"]

    conns = cluster(source=[("web01", 512, 200 * 1024 ** 3)])
    result = refusal(conns, check_mode=True)
    assert "Not enough capacity on node b: the disks need 204800 MiB in pool v2kvm, 102400 MiB are free" \
        in result["msg"]
    assert result["changed"] is False and where(conns) == {"a": True}
    # Shared storage (nothing copied) needs no room in the pool.
    assert run(conns, check_mode=True, copy_storage="none")["changed"] is True

    conns = cluster(source=[SMALL], pool=False)
    result = refusal(conns, check_mode=True)
    assert "storage pool v2kvm does not exist on node b" in result["msg"]


def test_a_refusal_of_a_real_run_ends_its_progress_with_failed_and_restores_sigterm(cluster, tmp_path):
    conns = cluster(source=[("web01", 8 * 1024 * 1024, 524288)])
    progress = str(tmp_path / "web01.progress")
    before = signal.getsignal(signal.SIGTERM)
    result = refusal(conns, progress_file=progress)
    assert "Not enough capacity on node b" in result["msg"]
    assert samples(progress)[-1]["stage"] == "failed"
    assert signal.getsignal(signal.SIGTERM) is before
    assert os.listdir(tmp_path / "home" / ".ansible" / "v2kvm" / "locks") == [], "the lock went with the run"


class StoppedWhileLooking:
    """A connection that gets SIGTERM (the run was stopped) when the run looks at the node's host."""

    def __init__(self, conn):
        self._conn = conn
        self.stopped = False

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def getCapabilities(self):
        if not self.stopped:
            self.stopped = True
            os.kill(os.getpid(), signal.SIGTERM)
        return self._conn.getCapabilities()


def test_a_stop_says_where_the_vm_is_defined(cluster, tmp_path):
    conns = cluster(source=[SMALL])
    stopping = StoppedWhileLooking(conns["a"])
    progress = str(tmp_path / "web01.progress")
    before = signal.getsignal(signal.SIGTERM)
    result = refusal(dict(conns, a=stopping), progress_file=progress)
    assert stopping.stopped
    assert result["msg"] == "migration of web01 stopped (interrupted by signal 15); the VM is defined on a", result
    assert samples(progress)[-1]["stage"] == "failed"
    assert signal.getsignal(signal.SIGTERM) is before
    assert where(conns) == {"a": True}
