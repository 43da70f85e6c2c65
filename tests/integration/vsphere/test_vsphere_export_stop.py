"""vsphere_export stopped with SIGTERM in the middle of an NFC download (what the progress action sends a
cancelled run and the orphan watchdog a run whose controller is gone): the module ends failed naming the
signal and the power it restored, its progress ends with a failed 0/0 sample, the partial download stays
described for the next run, which resumes it in a new lease and ends with a done sample of its bytes."""

import json
import signal
import subprocess
import time
import uuid

import pytest
import sim_rig
from helpers import run_module, start_module
from vsphere.conftest import vsphere_args

pytestmark = pytest.mark.integration
MIB = 1 << 20


def _last_sample(progress):
    return json.loads(progress.read_text().splitlines()[-1])


def _stop_midway(proc, part, at_least):
    """SIGTERM once ``part`` holds ``at_least`` bytes; (result, raw output) of the stopped module."""
    try:
        deadline = time.monotonic() + 120
        while not (part.exists() and part.stat().st_size >= at_least):
            assert proc.poll() is None, "the export ended before it could be stopped: %s" % (proc.communicate(),)
            assert time.monotonic() < deadline, "the download never reached %d bytes" % at_least
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out, err
    return json.loads(out), (out + err).decode("utf-8", "replace")


def test_sigterm_mid_export_restores_power_keeps_the_part_and_the_rerun_resumes(vsim, vsi, boot_raw, tmp_path):
    name = "v2kvm-test-stop-%s" % uuid.uuid4().hex[:6]
    flat = sim_rig.create_random_tail_vm(vsi, boot_raw, tmp_path, name, 48 * MIB)
    vm = sim_rig.find_vm(vsi, name)
    sim_rig.wait_task(vm.PowerOnVM_Task())
    dest = tmp_path / "dest"
    dest.mkdir()
    part = dest / ("%s-scsi0-0.vmdk.part" % name)
    progress = tmp_path / "progress.jsonl"
    # 8 MB/s between the module and the simulator: the download is still running when it is stopped.
    proxy = sim_rig.ThrottledProxy(vsim.host, vsim.port, 8 * MIB)
    try:
        proc = start_module("vsphere_export", tmp_path, **vsphere_args(
            vsim, name=name, dest=str(dest), port=proxy.port, shutdown_timeout=30, progress_file=str(progress)))
        stopped, raw = _stop_midway(proc, part, 12 * MIB)
    finally:
        proxy.close()
    assert stopped["failed"], stopped
    # The wording of a stop as it always was: the signal, then what was done to the power.
    assert stopped["msg"] == ("interrupted by signal %d Power: guest shutdown; powered on again after the failure."
                              % signal.SIGTERM), stopped["msg"]
    assert "problem" not in stopped and "Traceback" not in raw and vsim.password not in raw
    assert vm.runtime.powerState == "poweredOn", "the source runs again, as before the export"
    last = _last_sample(progress)
    assert (last["stage"], last["done"], last["total"]) == ("failed", 0, 0)
    assert part.exists() and (dest / (part.name + ".json")).exists(), "the partial download is kept, described"
    kept = part.stat().st_size

    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(
        vsim, name=name, dest=str(dest), shutdown_timeout=30, progress_file=str(progress)))
    assert not result.get("failed"), result
    check = result["manifest"][0]
    assert check["verified"] and check["resumed"] and not check["redownloaded"], check
    assert result["bytes_fetched"] <= check["size"] - kept + 64 * 1024 + MIB, "the kept bytes are not fetched again"
    last = _last_sample(progress)
    assert (last["stage"], last["done"], last["total"]) == ("done", result["bytes_fetched"], result["bytes_fetched"])
    assert vm.runtime.powerState == "poweredOff" and result["power_actions"] == ["guest shutdown"]
    same = subprocess.run(["qemu-img", "compare", flat, str(dest / ("%s-scsi0-0.vmdk" % name))],
                          capture_output=True, text=True, check=False)
    assert same.returncode == 0, same.stdout + same.stderr
