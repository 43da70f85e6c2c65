"""vsphere-sim for the tests: build and start it once, and put real disk bytes behind simulated VMs.

Each datastore of the simulator is a real local folder; a VM disk is written there in the ESXi
layout (text descriptor NAME.vmdk + raw NAME-flat.vmdk) and attached with CreateVM_Task, so the
export, /folder and CBT paths of the simulator serve the bytes of a rig boot disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
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


def _find(content, kind, name):
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        for obj in view.view:
            if obj.name == name:
                return obj
    finally:
        view.Destroy()
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


def disk_spec(datastore_path, capacity, *, key, controller_key=1000, unit=0, mode="persistent",
              sharing=None, rdm=None):
    if rdm:
        backing = vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo(
            fileName=datastore_path, compatibilityMode=rdm, diskMode=mode, deviceName="/vmfs/devices/disks/naa.1")
    else:
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=datastore_path, diskMode=mode, thinProvisioned=True)
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


def find_vm(si, name):
    return _find(si.RetrieveContent(), vim.VirtualMachine, name)


def disconnect(si):
    Disconnect(si)
