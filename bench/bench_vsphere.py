"""vSphere benchmarks against vsphere-sim (not run by CI). Prints ratios:

- export throughput of vsphere_export's NFC path vs a plain HTTPS download of the same lease URLs (goal >= 0.9x);
- warm cutover bytes vs a full copy with 10 % of the blocks changed (goal <= 0.15x);
- 1000 simulated VMs -> inventory + pre-flight seconds (goal <= 30 s).

Run: .venv/bin/python bench/bench_vsphere.py   (builds and starts the simulator from ../shared/vsphere-sim)
"""

import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, ".work", "collections"), os.path.join(REPO, "tests"),
                os.path.join(REPO, "tests", "integration", "vsphere")]

import requests  # noqa: E402
import sim_rig  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.module_utils import _preflight_rules as rules  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_export as vexport  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec  # noqa: E402

DISK_MIB = 512


def _connect(sim):
    return vconn.connect(sim.host, sim.username, sim.password, port=sim.port, validate_certs=False)


def _timed_downloads(spans):
    """Wrap transfer.download so each call's (start, end) lands in ``spans``: the export's download phase."""
    original = vexport.transfer.download

    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))

    return original, timed


def _plain_download(url, path):
    """What `curl -k -o path url` does: GET the file and write it out, nothing else."""
    started = time.monotonic()
    got = 0
    with requests.get(url, verify=False, stream=True, timeout=60) as resp, open(path, "wb") as out:  # noqa: S501
        resp.raise_for_status()
        for block in resp.iter_content(1 << 20):
            out.write(block)
            got += len(block)
    return got, time.monotonic() - started


def bench_export(sim, work, rounds=3):
    """Only the download phase counts on both sides: ExportVm (where the simulator builds the
    streamOptimized file), the lease wait and the manifest are outside both timers. Each side GETs the
    same lease file from the first request to the last byte; rounds alternate and the median is kept."""
    si = sim.connect()
    raw = os.path.join(work, "data.raw")
    with open(raw, "wb") as handle:  # half random, half zero: the stream is neither trivial nor all entropy
        for _mib in range(DISK_MIB):
            handle.write(os.urandom(1 << 19) + bytes(1 << 19))
    dsp, _flat, size = sim_rig.write_esxi_disk(si, "bench-export", "bench-export", raw)
    vm = sim_rig.create_vm(si, "bench-export", [sim_rig.disk_spec(dsp, size, key=2000)])
    ours, plain = [], []
    with _connect(sim) as conn:
        ref, props, place, pgs = vspec.find_vm(conn, name="bench-export")
        spec = vspec.build_spec(ref, props, place, conn.host, portgroups=pgs)
        for _round in range(rounds):
            spans = []
            original, timed = _timed_downloads(spans)
            vexport.transfer.download = timed
            try:
                fetched = vexport.export_nfc(conn, ref, spec, work, parallel=2, keepalive=30, timeout=60)[1]
            finally:
                vexport.transfer.download = original
            ours.append(fetched / (max(span[1] for span in spans) - min(span[0] for span in spans)))

            lease = vm.ExportVm()  # builds the file before the timer starts, as above
            try:
                url = vexport._lease_url(conn, lease.info.deviceUrl[0].url)
                got, seconds = _plain_download(url, os.path.join(work, "plain.vmdk"))
            finally:
                lease.HttpNfcLeaseComplete()
            plain.append(got / seconds)
    ours_mbs, plain_mbs = statistics.median(ours) / 1e6, statistics.median(plain) / 1e6
    print("export download phase (%d MiB disk, %d MB streamOptimized, median of %d): %.0f MB/s vs plain HTTPS "
          "%.0f MB/s -> ratio %.2f (goal >= 0.9)" % (DISK_MIB, fetched / 1e6, rounds, ours_mbs, plain_mbs,
                                                     ours_mbs / plain_mbs))


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
        vexport.enable_cbt(conn, ref)
        full = vexport.warm_sync(conn, ref, spec, dest, timeout=60)[0]
        blocks = size // 65536
        with open(flat, "r+b") as handle:
            for block in random.Random(1).sample(range(blocks), blocks // 10):  # noqa: S311
                handle.seek(block * 65536)
                handle.write(os.urandom(512))
        delta = vexport.warm_sync(conn, ref, spec, dest, timeout=60)[0]
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
