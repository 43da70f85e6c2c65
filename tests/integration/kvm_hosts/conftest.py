"""Fixtures for KVM-to-KVM tests: three private libvirt "hosts" (tests/rig/kvm_hosts.py) and
TCG guests on them whose serial console prints V2KVM-BOOT-OK once, then V2KVM-TICK n every second."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from rig.guest_image import BOOT_OK, TICK, make_boot_disk
from rig.libvirt_cleanup import remove_domains
from rig.kvm_hosts import POOL_PATH, start_hosts, stop_hosts
from rig.sshd import ansible_vars, start_sshd, stop_sshd

libvirt = pytest.importorskip("libvirt")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
MODULES = os.path.join(REPO, "plugins", "modules")
BUILD = os.path.join(REPO, ".work", "test-cache", "build")
RUN = uuid.uuid4().hex[:6]
PREFIX = f"v2kvm-test-{RUN}"

GUEST_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory}</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><bios useserial='yes'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk>
<serial type='pty'><log file='{log}' append='off'/><target port='0'/></serial>
<console type='pty'><target type='serial' port='0'/></console>
</devices></domain>"""


def serial_log(name):
    return f"/var/log/libvirt/qemu/{name}-serial0.log"


def read_log(host, name):
    try:
        with open(host.path(serial_log(name)), errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def ticks(text):
    return [int(line.split()[1]) for line in text.splitlines()
            if line.startswith(TICK + " ") and line.split()[1].isdigit()]


def boot_lines(text):
    return [line for line in text.splitlines() if line.startswith(BOOT_OK)]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_module(module, **args):
    """Run a module as Ansible would (JSON args file), return its parsed result."""
    args_file = os.path.join(BUILD, f"args-{uuid.uuid4().hex[:8]}.json")
    os.makedirs(BUILD, exist_ok=True)
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    try:
        proc = subprocess.run([sys.executable, os.path.join(MODULES, f"{module}.py"), args_file],
                              capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS),
                              timeout=600, check=False)
    finally:
        os.unlink(args_file)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


class Guests:
    """Creates guests on hosts and removes every one (and its disk) at the end, wherever it went."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.names = []

    def define(self, host, suffix, *, memory_mib=96, start=True, dirty_mib=0, broken=False):
        name = f"{PREFIX}-{suffix}"
        disk = f"{POOL_PATH}/{name}.raw"
        make_boot_disk(host.path(disk), marker=name, capacity_mib=40, workdir=BUILD, dirty_mib=dirty_mib,
                       broken=broken)
        os.chmod(host.path(disk), 0o644)
        conn = libvirt.open(host.uri)
        try:
            conn.storagePoolLookupByName("v2kvm").refresh(0)
            dom = conn.defineXML(GUEST_XML.format(name=name, memory=memory_mib, disk=disk, log=serial_log(name)))
            self.names.append(name)
            if start:
                dom.create()
        finally:
            conn.close()
        return name

    def wait_ticking(self, host, name, count=2, timeout=90):
        wait_for(lambda: len(ticks(read_log(host, name))) >= count, timeout, f"{name} to tick on {host.name}")

    def where(self, name):
        """Names of the hosts that have the domain defined or running."""
        found = []
        for host in self.hosts:
            conn = libvirt.open(host.uri)
            try:
                conn.lookupByName(name)
                found.append(host.name)
            except libvirt.libvirtError:
                pass
            finally:
                conn.close()
        return found

    def cleanup(self):
        for host in self.hosts:
            conn = libvirt.open(host.uri)
            try:
                remove_domains(conn, self.names)
                pool = conn.storagePoolLookupByName("v2kvm")
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    if vol.name().startswith(PREFIX):
                        vol.delete(0)
            finally:
                conn.close()


@pytest.fixture(scope="session")
def kvm_hosts():
    """Three libvirt hosts h1, h2, h3 (own daemons, own state, same machine)."""
    base = os.path.join(REPO, ".work", "kvm-hosts", RUN)
    hosts = start_hosts(base, ["h1", "h2", "h3"])
    yield hosts
    stop_hosts(hosts)
    subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)


@pytest.fixture(scope="session")
def kvm_ssh(kvm_hosts):
    """An sshd inside each host's mount namespace: host name -> inventory variables reaching it.

    A task delegated to h1 over SSH then sees h1's /var/lib/libvirt (pools, disks, serial logs) and
    nothing of h2's, as on separate machines.
    """
    servers = {}
    try:
        for host in kvm_hosts:
            servers[host.name] = start_sshd(os.path.join(host.root, "sshd"),
                                            prefix=["nsenter", f"--mount=/proc/{host.pid}/ns/mnt"])
        yield {name: ansible_vars(server) for name, server in servers.items()}
    finally:
        for server in servers.values():
            stop_sshd(server)


@pytest.fixture
def guests(kvm_hosts):
    tracker = Guests(kvm_hosts)
    yield tracker
    tracker.cleanup()


@pytest.fixture
def nodes(kvm_hosts):
    return [{"name": h.name, "uri": h.uri} for h in kvm_hosts]
