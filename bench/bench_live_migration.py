# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live-migration downtime of an idle guest, from libvirt's job stats: goal <= 300 ms.

Starts two private libvirt hosts (tests/rig/kvm_hosts.py), boots the rig's tiny TCG guest on the
first, moves it back and forth five times with v2kvm.migrate's live migration (copy-storage
included, max_downtime_ms=300) and prints the median downtime and its ratio to the goal.
Needs root; takes about a minute. Everything it starts is stopped by PID at the end.

    .venv/bin/python bench/bench_live_migration.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, ".work", "collections"), os.path.join(REPO, "tests")]

import libvirt  # noqa: E402
from rig.guest_image import TICK, make_boot_disk  # noqa: E402
from rig.kvm_hosts import POOL_PATH, start_hosts, stop_hosts  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.module_utils import _kvm_migration as mig  # noqa: E402

GOAL_MS = 300
ROUNDS = 5
XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><bios useserial='yes'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk><serial type='file'><source path='{log}'/><target port='0'/></serial>
</devices></domain>"""


def main():
    run = uuid.uuid4().hex[:6]
    base = os.path.join(REPO, ".work", "bench-kvm-hosts", run)
    hosts = start_hosts(base, ["b1", "b2"])
    name = f"v2kvm-test-bench-{run}"
    try:
        disk = f"{POOL_PATH}/{name}.raw"
        log = f"/var/log/libvirt/qemu/{name}-serial0.log"
        make_boot_disk(hosts[0].path(disk), marker=name, capacity_mib=40,
                       workdir=os.path.join(REPO, ".work", "test-cache", "build"))
        os.chmod(hosts[0].path(disk), 0o644)
        conns = [libvirt.open(h.uri) for h in hosts]
        conns[0].storagePoolLookupByName("v2kvm").refresh(0)
        conns[0].defineXML(XML.format(name=name, disk=disk, log=log)).create()
        deadline = time.monotonic() + 120
        while TICK not in open(hosts[0].path(log), errors="replace").read():
            if time.monotonic() > deadline:
                raise SystemExit("the guest did not boot within 120 s")
            time.sleep(0.5)
        downtimes, totals = [], []
        opts = {"copy_storage": "all", "migrate_uri": "tcp://127.0.0.1", "max_downtime_ms": GOAL_MS, "timeout": 300}
        for index in range(ROUNDS):
            src, dst = index % 2, (index + 1) % 2
            dom = conns[src].lookupByName(name)
            outcome = mig.live_migrate(dom, hosts[dst].uri, opts)
            stats = mig.completed_stats(conns[dst].lookupByName(name))
            downtimes.append(stats.get("downtime", 0))
            totals.append(outcome["elapsed"])
            print(f"round {index + 1}: {hosts[src].name} -> {hosts[dst].name}: downtime {stats.get('downtime')} ms, "
                  f"total {outcome['elapsed']:.2f} s")
        median = statistics.median(downtimes)
        print(f"live migration downtime (idle 128 MiB TCG guest, copy-storage): median {median:.0f} ms, "
              f"max {max(downtimes)} ms; goal {GOAL_MS} ms; ratio {median / GOAL_MS:.2f}")
        print(f"total migration time: median {statistics.median(totals):.2f} s")
        for conn in conns:
            conn.close()
        return 0 if median <= GOAL_MS else 1
    finally:
        stop_hosts(hosts)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
