"""The connection to vCenter cut in the middle of an export (a proxy between the module and vsphere-sim resets
every open connection, as a network failure or a restarted load balancer does): the run carries on by itself,
the download resumes with Range from the bytes already received, the SOAP calls after the cut (the lease
manifest) reconnect, and the result equals the source."""

import hashlib
import json
import subprocess
import time
import uuid

import pytest
import sim_rig
from helpers import start_module
from vsphere.conftest import vsphere_args

pytestmark = pytest.mark.integration
MIB = 1 << 20
RATE = 12 * MIB  # slow enough that the cut lands mid-download


def _wait_for_size(proc, path, at_least):
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_size >= at_least):
        assert proc.poll() is None, "the export ended before the connection could be cut: %s" % (proc.communicate(),)
        assert time.monotonic() < deadline, "the download never reached %d bytes" % at_least
        time.sleep(0.01)
    return path.stat().st_size


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert out, err
    return json.loads(out), (out + err).decode("utf-8", "replace")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("method", ["nfc", "datastore"])
def test_a_connection_cut_mid_export_is_resumed_with_range(vsim, vsi, boot_raw, tmp_path, method):
    name = "v2kvm-test-drop-%s" % uuid.uuid4().hex[:6]
    flat = sim_rig.create_random_tail_vm(vsi, boot_raw, tmp_path, name, 24 * MIB)
    dest = tmp_path / "dest"
    dest.mkdir()
    target = dest / ("%s-scsi0-0.%s" % (name, "vmdk" if method == "nfc" else "raw"))
    part = dest / (target.name + ".part")
    proxy = sim_rig.ThrottledProxy(vsim.host, vsim.port, RATE)
    try:
        # lease_keepalive: no keep-alive call in between, so the manifest is the first SOAP call after the cut.
        proc = start_module("vsphere_export", tmp_path, **vsphere_args(
            vsim, name=name, dest=str(dest), method=method, port=proxy.port, lease_keepalive=600))
        try:
            kept = _wait_for_size(proc, part, 8 * MIB)
            connections = proxy.accepted
            assert proxy.drop() >= 2, "the SOAP connection and the download were both open"
            proxy.rate = 1 << 40  # the network is back, at full speed
            result, raw = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        proxy.close()
    assert not result.get("failed"), result
    assert "Traceback" not in raw and vsim.password not in raw
    assert proxy.accepted >= connections + (2 if method == "nfc" else 1), "reconnected after the cut"
    assert not part.exists() and not (dest / (target.name + ".part.json")).exists()
    size = target.stat().st_size
    # Resumed: what crossed the wire is the file once (plus TLS and SOAP overhead), not the cut part twice.
    assert proxy.to_client < size + kept // 2, (proxy.to_client, size, kept)
    assert result["bytes_fetched"] >= size, "bytes of the broken attempt count as fetched"
    if method == "nfc":
        check = result["manifest"][0]
        assert check["verified"] and check["size"] == size, check  # the lease manifest's sha1 matches
        same = subprocess.run(["qemu-img", "compare", flat, str(target)], capture_output=True, text=True,
                              check=False)
        assert same.returncode == 0, same.stdout + same.stderr
    else:
        assert _sha256(target) == _sha256(flat)
