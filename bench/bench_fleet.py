#!/usr/bin/env python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Re-run of a finished 5-VM fleet vs its first run (prints the ratio; goal <= 0.03x). Not a test.

Five copies of the demo BIOS appliance (each its own OVA file, so each is its own source) are
migrated by the real playbook into a scratch pool with validation (TCG boots), then the same
command runs again. The second run finds every migration finished in the target's domain
metadata and skips the phases. Wall time of the whole ansible-playbook process is measured,
start-up included. Needs root and a libvirt daemon (started like the tests do when none answers).
Everything it creates is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "tests"), REPO]  # the rig imports as rig and as tests.rig

from rig.appliances import build_demo_set  # noqa: E402
from rig.libvirt_cleanup import remove_migration  # noqa: E402
from rig.libvirtd import ensure_libvirtd  # noqa: E402
from rig.playbook import run_playbook, write_inventory  # noqa: E402

VMS = 5


def timed_run(inventory):
    started = time.monotonic()
    run = run_playbook("migrate.yml", inventory, env={"ANSIBLE_FORKS": str(VMS)})
    elapsed = time.monotonic() - started
    if run.rc != 0:
        raise SystemExit("playbook failed:\n" + run.output[-3000:])
    return elapsed, run


def main():
    cache = os.path.join(REPO, ".work", "test-cache")
    demo = build_demo_set(os.path.join(cache, "appliances"), workdir=os.path.join(cache, "build"))
    daemon = ensure_libvirtd(os.path.join(REPO, ".work", "test-libvirtd"))
    tag = uuid.uuid4().hex[:6]
    pool_name = f"v2kvm-bench-{tag}"
    pool_path = f"/var/lib/libvirt/images/{pool_name}"
    names = [f"v2kvm-bench-{tag}-{i}" for i in range(VMS)]
    scratch = tempfile.mkdtemp(prefix="bench-fleet-", dir=os.path.join(REPO, ".work"))
    try:
        hosts = {}
        for i, name in enumerate(names):
            source = os.path.join(scratch, f"vm{i}.ova")
            shutil.copyfile(demo["demo-bios"], source)
            hosts[f"vm{i}"] = {"migrate_vm_source_path": source, "migrate_vm_name": name}
        inventory = write_inventory(os.path.join(scratch, "inventory.yml"), {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "migrate_vm_storage_pool": pool_name,
            "migrate_vm_storage_pool_path": pool_path,
            "migrate_vm_network_map": {"VM Network": "user"},
            "migrate_vm_boot_timeout": 600,
        }, hosts)
        first, _run = timed_run(inventory)
        again, rerun = timed_run(inventory)
        changed = sum(s["changed"] for s in rerun.stats.values())
        print(f"fleet of {VMS} VMs (demo BIOS appliance, TCG boot validation)")
        print(f"  first run   {first:7.2f} s")
        print(f"  re-run      {again:7.2f} s   changed tasks: {changed}")
        print(f"  ratio       {again / first:7.3f}x   (goal <= 0.03x)")
    finally:
        remove_migration("qemu:///system", names, pool_name, pool_path)
        shutil.rmtree(scratch, ignore_errors=True)
        daemon.stop()


if __name__ == "__main__":
    main()
