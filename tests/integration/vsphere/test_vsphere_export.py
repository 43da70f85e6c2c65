"""vsphere_export against vsphere-sim with real disk bytes: NFC export -> disk_convert -> a TCG boot that shows
the rig's marker, content equal to the source; guest shutdown; power restored on failure; datastore resume."""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest
import sim_rig
from vsphere.conftest import vsphere_args
from helpers import run_module, start_module
from rig.guest_image import BOOT_OK

pytestmark = pytest.mark.integration
IMAGES = "/var/lib/libvirt/images"


@pytest.fixture
def pool(libvirt_daemon, tmp_path):
    import libvirt

    name = f"v2kvm-test-vsphere-{uuid.uuid4().hex[:6]}"
    path = os.path.join(IMAGES, name)
    result, unused = run_module("storage_pool", tmp_path, name=name, path=path)
    assert not result.get("failed"), result
    yield {"name": name, "path": path}
    conn = libvirt.open(libvirt_daemon.uri)
    try:
        for dom_name in [d.name() for d in conn.listAllDomains() if d.name().startswith("v2kvm-test-")]:
            dom = conn.lookupByName(dom_name)
            if path in (dom.XMLDesc(0) or ""):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        pool_obj = conn.storagePoolLookupByName(name)
        if pool_obj.isActive():
            pool_obj.destroy()
        pool_obj.undefine()
    finally:
        conn.close()
        shutil.rmtree(path, ignore_errors=True)


def _identical(a, b):
    return subprocess.run(["qemu-img", "compare", a, b], capture_output=True, text=True, check=False)


def test_nfc_export_converts_boots_and_equals_the_source(vsim, vsi, make_vm, boot_raw, pool, tmp_path):
    vm, name, flat = make_vm(power_on=True)
    progress = tmp_path / "progress.jsonl"
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(
        vsim, name=name, dest=pool["path"], progress_file=str(progress), shutdown_timeout=30))
    assert result["changed"] and not result.get("failed"), result
    assert result["original_power_state"] == "poweredOn" and result["power_actions"] == ["guest shutdown"]
    assert vm.runtime.powerState == "poweredOff", "a cold export leaves the source off"
    assert result["manifest"][0]["verified"] is True
    disk = result["spec"]["disks"][0]
    assert disk["subformat"] == "streamOptimized" and disk["source_path"].startswith("/vmfs/volumes/LocalDS_0/")
    assert result["spec"]["source"]["type"] == "vsphere" and result["spec"]["source"]["moid"] == vm._moId
    lines = progress.read_text().splitlines()
    assert '"stage":"export"' in lines[0] and '"stage":"done"' in lines[-1]
    assert vsim.password not in raw

    again, unused = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=name, dest=pool["path"]))
    assert again["changed"] is False and again["bytes_fetched"] == 0, "a recorded export is not repeated"

    # The existing convert path takes the exported disk entry as it is.
    qcow2 = os.path.join(pool["path"], f"{name}-disk0.qcow2")
    converted, unused = run_module("disk_convert", tmp_path, disk=disk, dest=qcow2)
    assert converted["changed"] and not converted.get("failed"), converted
    same = _identical(boot_raw, qcow2)
    assert same.returncode == 0, same.stdout + same.stderr

    spec = dict(result["spec"], memory_mib=256)
    defined, unused = run_module("domain", tmp_path, spec=spec, disks=[qcow2], network_map={"VM Network": "user"},
                                 domain_type="qemu")
    assert defined["changed"] and not defined.get("failed"), defined
    verdict, unused = run_module("validate", tmp_path, name=name, boot_timeout=120)
    assert verdict["verdict"]["booted"] is True, verdict
    assert verdict["verdict"]["matched_line"] == f"{BOOT_OK} vsphere-sim"


def test_power_is_restored_when_the_export_fails(vsim, vsi, make_vm, tmp_path):
    vm, name, flat = make_vm(power_on=True)
    os.unlink(flat)  # the datastore download then finds nothing: a failure after the power-off
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(
        vsim, name=name, dest=str(tmp_path), method="datastore", shutdown_timeout=30))
    assert result["failed"] and "does not exist on the server" in result["msg"], result
    assert "powered on again after the failure" in result["msg"]
    assert vm.runtime.powerState == "poweredOn"
    assert vsim.password not in raw


def test_hard_power_off_needs_permission(vsim, vsi, make_vm, tmp_path):
    vm, name, unused = make_vm(power_on=True)
    sim_rig.wait_task(vm.SuspendVM_Task())  # a suspended guest cannot shut itself down
    refused, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=name, dest=str(tmp_path)))
    assert refused["failed"] and "allow_hard_power_off: true" in refused["msg"], refused
    assert vm.runtime.powerState == "suspended"
    allowed, unused = run_module("vsphere_export", tmp_path, **vsphere_args(
        vsim, name=name, dest=str(tmp_path), allow_hard_power_off=True))
    assert not allowed.get("failed"), allowed
    assert allowed["power_actions"] == ["hard power-off"] and vm.runtime.powerState == "poweredOff"


def test_datastore_download_resumes_a_broken_transfer(vsim, vsi, make_vm, boot_raw, tmp_path):
    vm, name, flat = make_vm()
    target = tmp_path / f"{name}-scsi0-0.raw"
    size = os.path.getsize(flat)
    half = size // 2 + 12345
    with open(flat, "rb") as src, open(f"{target}.part", "wb") as part:
        part.write(src.read(half))  # what a killed download leaves behind
    result, unused = run_module("vsphere_export", tmp_path, **vsphere_args(
        vsim, name=name, dest=str(tmp_path), method="datastore"))
    assert not result.get("failed"), result
    assert result["bytes_fetched"] == size - half, "only the missing tail is downloaded"
    assert not os.path.exists(f"{target}.part")
    with open(target, "rb") as got, open(boot_raw, "rb") as want:
        assert got.read() == want.read()


def _big_disk_vm(vsi, boot_raw, tmp_path, name, size):
    """A VM whose disk is the rig boot disk padded to ``size`` with a random tail (sparse in between), big
    enough that a download can be caught halfway."""
    source = tmp_path / "big.raw"
    shutil.copyfile(boot_raw, source)
    with open(source, "r+b") as handle:
        handle.truncate(size)
        handle.seek(size - (1 << 20))
        handle.write(os.urandom(1 << 20))
    dsp, flat, unused = sim_rig.write_esxi_disk(vsi, name, name, str(source))
    source.unlink()
    sim_rig.create_vm(vsi, name, [sim_rig.disk_spec(dsp, size, key=2000)])
    return flat


def test_killed_datastore_download_resumes_with_range_and_ends_identical(vsim, vsi, boot_raw, tmp_path):
    name = f"v2kvm-test-kill-{uuid.uuid4().hex[:6]}"
    size = 512 << 20
    flat = _big_disk_vm(vsi, boot_raw, tmp_path, name, size)
    dest = tmp_path / "dest"
    dest.mkdir()
    part = dest / f"{name}-scsi0-0.raw.part"
    args = vsphere_args(vsim, name=name, dest=str(dest), method="datastore")
    proc = start_module("vsphere_export", tmp_path, **args)
    _kill_when(proc, part, 32 << 20, "the download")
    kept = part.stat().st_size
    assert 0 < kept < size, "the killed run left a partial file"

    result, raw = run_module("vsphere_export", tmp_path, **args)
    assert not result.get("failed"), result
    assert result["bytes_fetched"] == size - kept, "the re-run fetches only what the killed run had not"
    assert not part.exists()
    same = subprocess.run(["cmp", str(dest / f"{name}-scsi0-0.raw"), flat], capture_output=True, text=True,
                          check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    assert vsim.password not in raw


def _kill_when(proc, path, at_least, what):
    try:
        deadline = time.monotonic() + 120
        while not (path.exists() and path.stat().st_size >= at_least):
            assert proc.poll() is None, "%s ended before it could be killed: %s" % (what, proc.communicate()[1])
            assert time.monotonic() < deadline, "%s never started" % what
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # no handler runs: what a crash or an OOM kill leaves behind
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_nfc_download_killed_in_one_lease_resumes_in_a_new_lease(vsim, vsi, boot_raw, tmp_path):
    name = f"v2kvm-test-nfckill-{uuid.uuid4().hex[:6]}"
    flat = sim_rig.create_random_tail_vm(vsi, boot_raw, tmp_path, name, 48 << 20)
    dest, other = tmp_path / "dest", tmp_path / "other"
    dest.mkdir()
    other.mkdir()
    part = dest / f"{name}-scsi0-0.vmdk.part"
    # 8 MB/s between the module and the simulator: the first run is still downloading when it is killed.
    proxy = sim_rig.ThrottledProxy(vsim.host, vsim.port, 8 << 20)
    try:
        args = vsphere_args(vsim, name=name, dest=str(dest), port=proxy.port)
        proc = start_module("vsphere_export", tmp_path, **args)
        _kill_when(proc, part, 12 << 20, "the NFC download")
    finally:
        proxy.close()
    kept = part.stat().st_size
    assert (dest / f"{name}-scsi0-0.vmdk.part.json").exists(), "the partial file is described for the next run"
    # The same partial file with one byte changed well inside the kept data, where the resume check does
    # not look: only the manifest can tell, and the disk must then be downloaded again from the start.
    for suffix in (".part", ".part.json"):
        shutil.copyfile(f"{dest}/{name}-scsi0-0.vmdk{suffix}", f"{other}/{name}-scsi0-0.vmdk{suffix}")
    with open(other / part.name, "r+b") as handle:
        handle.seek(kept // 2)
        byte = handle.read(1)
        handle.seek(kept // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))

    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=name, dest=str(dest)))
    assert not result.get("failed"), result
    check = result["manifest"][0]
    assert check["verified"] and check["resumed"] and not check["redownloaded"], check
    stream = check["size"]
    assert kept < stream, "the first run was killed midway"
    assert result["bytes_fetched"] < stream, "the new lease resumed instead of downloading everything"
    # The rest of the stream, plus the head and the 1 MiB sample read again to check the kept bytes.
    assert result["bytes_fetched"] <= stream - kept + (64 << 10) + (1 << 20)
    assert not part.exists() and not (dest / f"{name}-scsi0-0.vmdk.part.json").exists()
    same = _identical(flat, str(dest / f"{name}-scsi0-0.vmdk"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert vsim.password not in raw

    caught, unused = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=name, dest=str(other)))
    assert not caught.get("failed"), caught
    check = caught["manifest"][0]
    assert check["verified"] and check["redownloaded"] and not check["resumed"], check
    assert caught["bytes_fetched"] > stream, "the wrong resume was thrown away and the disk fetched whole"
    same = _identical(flat, str(other / f"{name}-scsi0-0.vmdk"))
    assert same.returncode == 0, same.stdout + same.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
@pytest.mark.parametrize("method", ["datastore", "nfc", "warm"])
def test_a_work_dir_without_room_is_refused_before_anything_is_written(vsim, vsi, make_vm, small_fs, tmp_path,
                                                                       method):
    vm, name, unused = make_vm(power_on=True)
    dest = small_fs(2)  # the rig disk holds about 12 MiB of data on a 64 MiB disk
    args = vsphere_args(vsim, name=name, dest=str(dest), method=method, shutdown_timeout=30)
    if method == "datastore":
        # The flat file's size is known up front: refused in check mode too, before the VM is touched.
        checked, unused = run_module("vsphere_export", tmp_path, check_mode=True, **args)
        assert checked.get("failed") and "not enough free space in %s" % dest in checked["msg"], checked
    result, raw = run_module("vsphere_export", tmp_path, **args)
    assert result.get("failed"), result
    assert "not enough free space in %s" % dest in result["msg"] and "free at least" in result["msg"], result
    assert "choose a dest directory on a file system with room" in result["msg"]
    assert vsim.password not in raw
    assert os.listdir(dest) == [], "nothing was written"
    assert vm.runtime.powerState == "poweredOn", "the source runs as before"
    if method == "datastore":
        assert result["power_actions"] == [], "refused before any power operation"
    if method == "nfc":
        assert "powered on again after the failure" in result["msg"], result
    assert vm.snapshot is None, "no snapshot left behind"
