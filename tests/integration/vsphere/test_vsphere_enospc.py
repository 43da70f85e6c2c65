"""The dest file system of vsphere_export fills up while a disk downloads, after the free-space check passed.

dest is a size-limited tmpfs in a private mount namespace (rig.private_fs); the module runs there through
nsenter, behind a slow proxy so the download is caught midway, and a second writer takes the remaining space.
The rule for a download (docs/vsphere.md): the partial file is kept so the next run resumes it, and the
message says so. After the space is freed a re-run resumes and ends with the source's content. A warm sync
records nothing for a disk it could not finish, so its re-run copies the same areas again.
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import sim_rig
from helpers import COLLECTIONS, MODULES
from rig.private_fs import PrivateFs, host_mounts
from vsphere.conftest import vsphere_args

MIB = 1 << 20
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting in a private namespace needs root")]


def _start(fs, tmp_path, args):
    args_file = tmp_path / ("args-%s.json" % uuid.uuid4().hex[:8])
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    return subprocess.Popen(fs.command([sys.executable, os.path.join(MODULES, "vsphere_export.py"), str(args_file)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=COLLECTIONS))


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert out, err
    return json.loads(out), out + err


def _allocated(path):
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("method", ["nfc", "datastore", "warm"])
def test_a_dest_filled_midway_keeps_the_part_and_the_rerun_resumes(vsim, vsi, boot_raw, tmp_path, method):
    name = "v2kvm-test-full-%s" % uuid.uuid4().hex[:6]
    flat = sim_rig.create_random_tail_vm(vsi, boot_raw, tmp_path, name, 16 * MIB)  # 80 MiB disk
    vm = sim_rig.find_vm(vsi, name)
    if method == "warm":
        sim_rig.wait_task(vm.PowerOnVM_Task())
    mountpoint = tmp_path / "dest"
    fs = PrivateFs(mountpoint, 96)
    proxy = sim_rig.ThrottledProxy(vsim.host, vsim.port, 12 * MIB)
    target = "%s-scsi0-0.%s" % (name, "vmdk" if method == "nfc" else "raw")
    # A download writes into .part; a warm sync writes the areas straight into the (sparse) copy.
    part = fs.host_view(target + ("" if method == "warm" else ".part"))
    try:
        args = vsphere_args(vsim, name=name, dest=str(mountpoint), method=method)
        proc = _start(fs, tmp_path, dict(args, port=proxy.port))
        try:
            deadline = time.monotonic() + 60
            while _allocated(part) < 8 * MIB:
                assert proc.poll() is None, "the export ended before dest could be filled: %s" % (proc.communicate(),)
                assert time.monotonic() < deadline, "the download never started"
                time.sleep(0.01)
            filler = fs.fill()  # another writer takes the rest, after the module's check passed
            proxy.rate = 1 << 40
            failed, raw = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert failed.get("failed"), failed
        msg = failed["msg"]
        assert "the file system holding %s ran out of space (No space left on device)" % mountpoint in msg, msg
        assert "still to come" in msg and "free space on the file system holding %s" % mountpoint in msg, msg
        assert "Traceback" not in raw and vsim.password not in raw
        kept = os.path.getsize(part)
        if method == "warm":
            assert "the sync restarts from the last recorded changeId" in msg, msg
            # The copy is unrecorded (no changeId kept for it), so the next sync rewrites it whole.
            assert fs.listing() == sorted(["filler", target]), "no state recorded for the unfinished copy"
            assert vm.runtime.powerState == "poweredOn" and vm.snapshot is None, "the sync snapshot is removed"
        else:
            assert "the partial download %s.part is kept on purpose so the next run resumes" % target in msg, msg
            expected = ["filler", target + ".part"] + ([target + ".part.json"] if method == "nfc" else [])
            assert fs.listing() == sorted(expected), "only the resumable partial file is left, nothing else"
            assert vm.runtime.powerState == "poweredOff"

        os.unlink(filler)  # the space is freed
        result, raw = _finish(_start(fs, tmp_path, args))
        assert not result.get("failed"), result
        assert target + ".part" not in fs.listing()
        if method == "warm":
            assert result["sync"]["kind"] == "full", result["sync"]
        elif method == "nfc":
            check = result["manifest"][0]
            assert check["verified"] and check["resumed"] and not check["redownloaded"], check
            assert result["bytes_fetched"] < check["size"], "resumed, not downloaded again"
        else:
            assert result["bytes_fetched"] == os.path.getsize(flat) - kept, "only the rest is downloaded"
        same = subprocess.run(["qemu-img", "compare", flat, fs.host_view(target)], capture_output=True, text=True,
                              check=False)
        assert same.returncode == 0, same.stdout + same.stderr
        assert str(mountpoint) not in host_mounts(), "the tmpfs stays inside its namespace"
    finally:
        proxy.close()
        fs.close()
    assert os.listdir(mountpoint) == [], "the host never saw the files"
