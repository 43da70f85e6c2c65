"""vSphere benchmarks against vsphere-sim (not run by CI). Prints ratios:

- export throughput of vsphere_export's NFC path vs a plain HTTPS download of the same lease URLs, with requests
  and with curl (goal >= 0.9x);
- warm cutover bytes vs a full copy with 10 % of the blocks changed (goal <= 0.15x);
- 1000 simulated VMs -> inventory + pre-flight seconds (goal <= 30 s).

Run: .venv/bin/python bench/bench_vsphere.py   (builds and starts the simulator from ../shared/vsphere-sim)
"""

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, ".work", "collections"), os.path.join(REPO, "tests"),
                os.path.join(REPO, "tests", "integration", "vsphere")]

import requests  # noqa: E402
import sim_rig  # noqa: E402
import urllib3  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.module_utils import _preflight_rules as rules  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_export as vexport  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_warm as vwarm  # noqa: E402

DISK_MIB = 512


urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the simulator's self-signed certificate


def _connect(sim):
    return vconn.connect(sim.host, sim.username, sim.password, port=sim.port, validate_certs=False)


def _timed_downloads(spans):
    """Wrap transfer.download so each call's (start, end) lands in ``spans``: the export's download phase."""
    original = vexport.transfer.download

    def timed(*args, **kwargs):
        os.sync()  # the lease file the simulator just wrote, as before each plain download
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))

    return original, timed


def _plain_download(url, path):
    """A plain download with the usual Python library: GET the file, write it out, nothing else."""
    started = time.monotonic()
    got = 0
    with requests.get(url, verify=False, stream=True, timeout=60) as resp, open(path, "wb") as out:  # noqa: S501
        resp.raise_for_status()
        for block in resp.iter_content(1 << 20):
            out.write(block)
            got += len(block)
    return got, time.monotonic() - started


def _curl_download(url, path):
    """What `curl -k -o path url` does, in C."""
    started = time.monotonic()
    subprocess.run(["curl", "-sSfk", "-o", path, url], check=True, timeout=300)  # noqa: S603,S607
    return os.path.getsize(path), time.monotonic() - started


def _settle(*paths):
    """Outside every timer: write back what a run left dirty (the plain downloads never flush) and remove the
    outputs, so no run pays for the write-back of the one before it."""
    os.sync()
    for path in paths:
        if os.path.exists(path):
            os.unlink(path)


def bench_export(sim, work, rounds=9):
    """Only the download phase counts on every side: ExportVm (where the simulator builds the
    streamOptimized file), the lease wait and the manifest are outside the timers. Each side GETs the
    same lease file from the first request to the last byte; rounds alternate and the median is kept."""
    si = sim.connect()
    raw = os.path.join(work, "data.raw")
    with open(raw, "wb") as handle:  # half random, half zero: the stream is neither trivial nor all entropy
        for _mib in range(DISK_MIB):
            handle.write(os.urandom(1 << 19) + bytes(1 << 19))
    dsp, _flat, size = sim_rig.write_esxi_disk(si, "bench-export", "bench-export", raw)
    os.unlink(raw)
    vm = sim_rig.create_vm(si, "bench-export", [sim_rig.disk_spec(dsp, size, key=2000)])
    plain_path = os.path.join(work, "plain.vmdk")
    baselines = {"requests": _plain_download}
    if shutil.which("curl"):
        baselines["curl"] = _curl_download
    ours, plain = [], {name: [] for name in baselines}
    with _connect(sim) as conn:
        ref, props, place, pgs = vspec.find_vm(conn, name="bench-export")
        spec = vspec.build_spec(ref, props, place, conn.host, portgroups=pgs)
        ours_path = os.path.join(work, "%s-%s.vmdk" % (spec["name"], spec["disks"][0]["id"]))
        for _round in range(rounds):
            _settle(ours_path)
            spans = []
            original, timed = _timed_downloads(spans)
            vexport.transfer.download = timed
            try:
                fetched = vexport.export_nfc(conn, ref, spec, work, parallel=2, keepalive=30, timeout=60)[1]
            finally:
                vexport.transfer.download = original
            ours.append(fetched / (max(span[1] for span in spans) - min(span[0] for span in spans)))
            _settle(ours_path)

            lease = vm.ExportVm()  # builds the file before the timers start, as above
            _settle()
            try:
                url = vexport._lease_url(conn, lease.info.deviceUrl[0].url)
                for name, fetch in baselines.items():
                    got, seconds = fetch(url, plain_path)
                    plain[name].append(got / seconds)
                    _settle(plain_path)
            finally:
                lease.HttpNfcLeaseComplete()
    ours_mbs = statistics.median(ours) / 1e6
    print("export download phase (%d MiB disk, %d MB streamOptimized, median of %d rounds):" % (
        DISK_MIB, fetched / 1e6, rounds))
    print("  vsphere_export (sha1 + fsync)  %4.0f MB/s   rounds: %s" % (
        ours_mbs, " ".join("%.0f" % (x / 1e6) for x in ours)))
    for name, speeds in plain.items():
        plain_mbs = statistics.median(speeds) / 1e6
        # Each round's two runs follow each other within a second: their ratio cancels the load of the moment.
        paired = statistics.median(mine / theirs for mine, theirs in zip(ours, speeds))
        print("  plain HTTPS, %-17s %4.0f MB/s   rounds: %s  -> ratio %.2f, median of per-round ratios %.2f "
              "(goal >= 0.9)" % (name, plain_mbs, " ".join("%.0f" % (x / 1e6) for x in speeds), ours_mbs / plain_mbs,
                                 paired))


def bench_warm(sim, work):
    si = sim.connect()
    raw = os.path.join(work, "warm.raw")
    with open(raw, "wb") as handle:
        handle.write(os.urandom(DISK_MIB << 20))
    dsp, flat, size = sim_rig.write_esxi_disk(si, "bench-warm", "bench-warm", raw)
    sim_rig.create_vm(si, "bench-warm", [sim_rig.disk_spec(dsp, size, key=2000)], power_on=True)
    dest = os.path.join(work, "warm")
    os.makedirs(dest)
    with _connect(sim) as conn:
        ref, props, place, pgs = vspec.find_vm(conn, name="bench-warm")
        spec = vspec.build_spec(ref, props, place, conn.host, portgroups=pgs)
        vwarm.enable_cbt(conn, ref)
        full = vwarm.warm_sync(conn, ref, spec, dest, timeout=60)[0]
        blocks = size // 65536
        with open(flat, "r+b") as handle:
            for block in random.Random(1).sample(range(blocks), blocks // 10):  # noqa: S311
                handle.seek(block * 65536)
                handle.write(os.urandom(512))
        delta = vwarm.warm_sync(conn, ref, spec, dest, timeout=60)[0]
    ratio = delta["bytes"] / full["bytes"]
    print("warm: delta %d bytes vs full %d bytes -> ratio %.3f (goal <= 0.15)" % (delta["bytes"], full["bytes"], ratio))


def bench_inventory(binary):
    # -vm is per resource pool: 1 standalone host + 3 clusters = 4 pools x 250 = 1000 VMs (checked below).
    sim = sim_rig.start_simulator(binary, "-vm", "250", "-cluster", "3", "-api-version", "8.0.0.0")
    try:
        started = time.monotonic()
        with _connect(sim) as conn:
            vms, tree, pgs = vspec.collect(conn)
            findings = 0
            for ref, props in vms:
                spec = vspec.build_spec(ref, props, vspec.placement(tree, props), conn.host, portgroups=pgs)
                findings += len(rules.evaluate(spec, target_free_bytes=1 << 40))
        if len(vms) != 1000:
            raise SystemExit("the simulator made %d VMs, not 1000: adjust the -vm/-cluster flags" % len(vms))
        print("inventory + pre-flight of %d VMs: %.1f s (goal <= 30 s), %d findings" % (
            len(vms), time.monotonic() - started, findings))
    finally:
        sim.stop()


def main():
    binary = sim_rig.build_simulator()
    sim = sim_rig.start_simulator(binary, "-api-version", "8.0.0.0")
    try:
        with tempfile.TemporaryDirectory() as work:
            bench_export(sim, work)
            bench_warm(sim, work)
    finally:
        sim.stop()
    bench_inventory(binary)


if __name__ == "__main__":
    main()
