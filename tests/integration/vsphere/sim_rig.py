"""vsphere-sim for the tests: build and start it once, and put real disk bytes behind simulated VMs.

Each datastore of the simulator is a real local folder; a VM disk is written there in the ESXi
layout (text descriptor NAME.vmdk + raw NAME-flat.vmdk) and attached with CreateVM_Task, so the
export, /folder and CBT paths of the simulator serve the bytes of a rig boot disk.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from urllib.parse import urlparse

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
# The simulator ships beside the repo (see its README); never an absolute path of this machine.
SIM_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "vsphere-sim"))

DESCRIPTOR = """# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW {sectors} VMFS "{flat}"

# The Disk Data Base
#DDB

ddb.adapterType = "{adapter}"
ddb.virtualHWVersion = "13"
"""


class SimUnavailable(Exception):
    pass


class Simulator:
    """A running vsphere-sim: ``url`` (with its accepted user/password), ``pid``; ``stop()`` kills it by PID."""

    def __init__(self, pid, url):
        self.pid = pid
        parsed = urlparse(url)
        self.host = parsed.hostname
        self.port = parsed.port
        self.username = parsed.username
        self.password = parsed.password

    def connect(self):
        return SmartConnect(host=self.host, port=self.port, user=self.username, pwd=self.password,
                            disableSslCertValidation=True)

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _attempt in range(50):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended between the last check and now
            pass


class ThrottledProxy:
    """A TCP relay in front of the simulator that passes at most ``rate`` bytes/s towards the client
    (all connections together): a slow network, so a download can be caught and killed midway. TLS
    goes through untouched. ``port`` is where to connect; ``close()`` stops it.

    ``drop()`` cuts every connection open at that moment, as a network failure or a restarted server does
    (new connections are served as before); ``to_client`` counts the bytes relayed towards the client and
    ``accepted`` the connections made, so a test can tell a resumed download from one started over.
    ``rate`` may be changed at any time (e.g. lifted after a drop)."""

    def __init__(self, target_host, target_port, rate):
        self.target = (target_host, target_port)
        self.rate = rate
        self._budget_lock = threading.Lock()
        self._next_free = time.monotonic()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._sockets = []
        self._lock = threading.Lock()
        self.to_client = 0
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, unused = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, server]
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def drop(self):
        """Cut every open connection (TCP reset towards both sides); returns how many were cut."""
        with self._lock:
            live, self._sockets = self._sockets, []
        for sock in live:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay thread blocked in recv
            except OSError:
                pass
            sock.close()
        return len(live) // 2

    def _wait_for(self, count):
        with self._budget_lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + count / self.rate
        if start > now:
            time.sleep(start - now)

    def _pump(self, source, sink, throttled):
        try:
            while True:
                data = source.recv(16384)
                if not data:
                    break
                if throttled:
                    self._wait_for(len(data))
                sink.sendall(data)
                if throttled:
                    with self._lock:
                        self.to_client += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._closed.set()
        self._listener.close()
        with self._lock:
            live, self._sockets = self._sockets, []
        for sock in live:
            sock.close()


def build_simulator() -> str:
    build = os.path.join(SIM_DIR, "build.sh")
    if not os.path.exists(build):
        raise SimUnavailable(f"vsphere-sim is not at {SIM_DIR} (expected ../shared/vsphere-sim beside the repo)")
    proc = subprocess.run([build], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SimUnavailable("vsphere-sim did not build (needs Debian packages golang-go and "
                             "golang-github-vmware-govmomi-dev): " + proc.stderr[-2000:])
    return proc.stdout.strip().splitlines()[-1]


def start_simulator(binary, *flags) -> Simulator:
    proc = subprocess.run([os.path.join(SIM_DIR, "start.sh"), binary, *flags], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError("vsphere-sim did not start: " + proc.stderr[-2000:])
    pid, url = proc.stdout.split()
    return Simulator(int(pid), url)


def _all(content, kind):
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


def _find(content, kind, name):
    for obj in _all(content, kind):
        if obj.name == name:
            return obj
    raise LookupError(f"no {kind.__name__} named {name}")


def wait_task(task, timeout=60):
    deadline = time.monotonic() + timeout
    while task.info.state not in ("success", "error"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task} still {task.info.state}")
        time.sleep(0.05)
    if task.info.state == "error":
        raise task.info.error
    return task.info.result


def datastore_dir(si, ds_name="LocalDS_0"):
    content = si.RetrieveContent()
    return _find(content, vim.Datastore, ds_name).info.url


def datastore_dirs(si):
    """The simulator's own datastore folders (the temporary ones it made at start-up)."""
    urls = [ds.info.url for ds in _all(si.RetrieveContent(), vim.Datastore)]
    return [url for url in urls if os.path.basename(url.rstrip("/")).startswith("govcsim-")]


def write_esxi_disk(si, vm_dir, disk_name, raw_source, *, ds_name="LocalDS_0", adapter="lsilogic"):
    """Copy ``raw_source`` as [ds] vm_dir/disk_name-flat.vmdk plus its descriptor; returns the datastore path."""
    root = datastore_dir(si, ds_name)
    folder = os.path.join(root, vm_dir)
    os.makedirs(folder, exist_ok=True)
    flat = f"{disk_name}-flat.vmdk"
    shutil.copyfile(raw_source, os.path.join(folder, flat))
    size = os.path.getsize(raw_source)
    with open(os.path.join(folder, f"{disk_name}.vmdk"), "w", encoding="ascii") as handle:
        handle.write(DESCRIPTOR.format(sectors=size // 512, flat=flat, adapter=adapter))
    return f"[{ds_name}] {vm_dir}/{disk_name}.vmdk", os.path.join(folder, flat), size


def disk_spec(datastore_path, capacity, *, key, controller_key=1000, unit=0, mode="persistent", sharing=None):
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=datastore_path, diskMode=mode,
                                                            thinProvisioned=True)
    if sharing:
        backing.sharing = sharing
    disk = vim.vm.device.VirtualDisk(key=key, controllerKey=controller_key, unitNumber=unit,
                                     capacityInKB=capacity // 1024, backing=backing)
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=disk)


def create_vm(si, name, disks, *, guest_id="debian11_64Guest", firmware="bios", memory_mb=256, cpus=1,
              secure_boot=False, extra_devices=(), folder=None, power_on=False, mac="00:50:56:aa:bb:01"):
    """A VM on DC0_C0 with a pvscsi controller, the given disk specs and one NIC on 'VM Network'."""
    content = si.RetrieveContent()
    dc = _find(content, vim.Datacenter, "DC0")
    cluster = _find(content, vim.ClusterComputeResource, "DC0_C0")
    devices = [vim.vm.device.VirtualDeviceSpec(
        operation="add", device=vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0,
                                                                        sharedBus="noSharing"))]
    devices += disks
    nic = vim.vm.device.VirtualVmxnet3(
        key=4000, addressType="manual", macAddress=mac,
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"))
    devices.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=nic))
    devices += list(extra_devices)
    config = vim.vm.ConfigSpec(
        name=name, guestId=guest_id, numCPUs=cpus, memoryMB=memory_mb, firmware=firmware,
        files=vim.vm.FileInfo(vmPathName=f"[LocalDS_0] {name}/{name}.vmx"), deviceChange=devices,
        annotation=f"v2kvm test VM {name}")
    if secure_boot:
        config.bootOptions = vim.vm.BootOptions(efiSecureBootEnabled=True)
    vm = wait_task((folder or dc.vmFolder).CreateVM_Task(config=config, pool=cluster.resourcePool))
    if power_on:
        wait_task(vm.PowerOnVM_Task())
    return vm


def create_random_tail_vm(si, boot_raw, workdir, name, tail):
    """A powered-off VM whose disk is the rig boot disk followed by ``tail`` random bytes: its streamOptimized
    export cannot compress them away, so a download lasts long enough to be cut or killed midway. Returns
    the flat file on the simulator's datastore."""
    source = os.path.join(str(workdir), "%s-random-tail.raw" % name)
    shutil.copyfile(boot_raw, source)
    with open(source, "ab") as handle:
        handle.write(os.urandom(tail))
    dsp, flat, size = write_esxi_disk(si, name, name, source)
    os.unlink(source)
    create_vm(si, name, [disk_spec(dsp, size, key=2000)])
    return flat


def attach_as_rdm(vm, compatibility_mode, key=2000):
    """Turn the VM's disk ``key`` into a raw device mapping (an RDM pointer file on the same datastore path).

    The simulator (govmomi 0.24) cannot add a disk whose backing is not FlatVer2: updateDiskLayouts casts every
    disk backing to FlatVer2BackingInfo and panics. An "edit" of an existing disk stores the new device list
    first and panics afterwards, so the VM keeps its RDM disk; Go's HTTP server recovers the panic and drops
    only that request's connection (the reconfigure task stays "running"). The VM is fit for reading
    (inventory, pre-flight), not for anything that lays out its disks again (power, snapshot, destroy)."""
    disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk) and d.key == key)
    disk.backing = vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo(
        fileName=disk.backing.fileName, compatibilityMode=compatibility_mode, diskMode="independent_persistent",
        deviceName="/vmfs/devices/disks/naa.6000c29f0a1b2c3d4e5f60718293a4b5", lunUuid="02000000006000c29f0a1b2c3d")
    edit = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
    try:
        vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[edit]))
    except http.client.RemoteDisconnected:
        pass  # the panic described above, after the change was stored
    backing = next(d.backing for d in vm.config.hardware.device if d.key == key)
    if not isinstance(backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo):
        raise RuntimeError(f"the simulator did not keep the RDM backing of disk {key}: {type(backing).__name__}")
    return vm


def find_vm(si, name):
    return _find(si.RetrieveContent(), vim.VirtualMachine, name)


def disconnect(si):
    Disconnect(si)
