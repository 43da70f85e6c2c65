#!/usr/bin/env python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Re-run of a finished 5-VM fleet vs its first run (prints the ratio; goal <= 0.03x). Not a test.

Each VM is its own OVA holding one streamOptimized disk: the bootable demo guest (MBR, syslinux,
host kernel, busybox initramfs, TCG boot) on a sparse disk of --capacity-gib that also holds
--data-mib of random, incompressible data, so conversion, manifest check and content compare
move real bytes the way a real VM's disk makes them. The real playbook migrates the fleet into a
scratch pool with validation, then the same command runs again (--reruns times; the median
counts). The re-run finds every migration finished in the target's domain metadata and skips the
phases. Wall time of the whole ansible-playbook process is measured, start-up included.

The re-run's own cost is broken down with plays over the same inventory: an empty play, the
role's argument check alone, and the migration_state look-up alone, each with and without
ANSIBLE_PIPELINING.

Needs root and a libvirt daemon (started like the tests do when none answers). Everything it
creates is removed at the end. Disk space: about 2 x VMS x (data + 64 MiB) while it runs.

    .venv/bin/python bench/bench_fleet.py [--vms 5] [--data-mib 512] [--capacity-gib 4] [--reruns 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "tests"), REPO]  # the rig imports as rig and as tests.rig

from rig import guest_image, ovf_package  # noqa: E402
from rig.libvirt_cleanup import remove_migration  # noqa: E402
from rig.libvirtd import ensure_libvirtd  # noqa: E402
from rig.playbook import run_playbook, write_inventory  # noqa: E402

MIB = 1 << 20
DATA_OFFSET = 128 * MIB  # past the 64 MiB boot partition
PIECE = 16 * MIB


def build_vm(index, scratch, workdir, data_mib, capacity_gib):
    """One OVA: boot disk of capacity_gib with data_mib of random bytes after the boot partition."""
    marker = f"bench-fleet-{index}"
    raw = os.path.join(scratch, f"vm{index}.raw")
    guest_image.make_boot_disk(raw, marker=marker, capacity_mib=64, workdir=workdir)
    with open(raw, "r+b") as handle:
        handle.truncate(capacity_gib << 30)
        handle.seek(DATA_OFFSET)
        for _piece in range(data_mib * MIB // PIECE):
            handle.write(os.urandom(PIECE))
    staging = os.path.join(scratch, f"vm{index}-staging")
    os.makedirs(staging)
    vmdk = ovf_package.to_vmdk(raw, os.path.join(staging, f"vm{index}-disk1.vmdk"), "streamOptimized")
    disk = ovf_package.disk_entry(vmdk, disk_id="vmdisk1", controller="scsi", unit=0, raw_path=raw)
    os.unlink(raw)
    ovf = ovf_package.write_ovf(
        os.path.join(staging, f"vm{index}.ovf"), name=f"vm{index}", vcpus=1, memory_mib=256, firmware="bios",
        os_type="debian12_64Guest", os_description="Debian GNU/Linux 12 (64-bit)", disks=[disk],
        nics=[{"mac": "00:50:56:a1:10:%02x" % index, "network": "VM Network", "model": "vmxnet3"}],
        annotation="v2kvm fleet benchmark VM")
    ova = ovf_package.make_ova(os.path.join(scratch, f"vm{index}.ova"), ovf, [vmdk], digest="sha256")
    shutil.rmtree(staging)
    return ova


def timed_playbook(playbook, inventory, env=None, playbook_dir=None):
    """Wall seconds of one ansible-playbook run (playbook_dir: a play written here, not the collection's)."""
    env = dict({"ANSIBLE_FORKS": "5"}, **(env or {}))
    started = time.monotonic()
    if playbook_dir is None:
        run = run_playbook(playbook, inventory, env=env)
    else:
        run = _run_own_play(os.path.join(playbook_dir, playbook), inventory, env)
    elapsed = time.monotonic() - started
    if run.rc != 0:
        raise SystemExit(f"{playbook} failed:\n" + run.output[-3000:])
    return elapsed, run


class _Run:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr


def _run_own_play(path, inventory, env):
    bindir = os.path.dirname(sys.executable)
    environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_RETRY_FILES_ENABLED="False",
                   PATH=bindir + os.pathsep + os.environ.get("PATH", ""), **env)
    proc = subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", inventory, path], capture_output=True,
                          text=True, env=environ, timeout=600, check=False)
    return _Run(proc)


PLAYS = {
    "empty.yml": """
- hosts: migrate
  gather_facts: false
  tasks: []
""",
    "argspec.yml": """
- hosts: migrate
  gather_facts: false
  tasks:
    - ansible.builtin.validate_argument_spec:
        argument_spec: "{{ (lookup('file', spec) | from_yaml).argument_specs.main.options }}"
      vars:
        spec: "%(repo)s/roles/migrate_vm/meta/argument_specs.yml"
""",
}
# The role's look-up as the role runs it (delegated to the target, so one listing answers the
# batch), and what a single module run for the whole play would cost (run_once).
_LOOKUP = """
- hosts: migrate
  gather_facts: false
  tasks:
    - v2kvm.migrate.migration_state:
        uri: qemu:///system
        source_path: "{{ migrate_vm_source_path }}"
        name: "{{ migrate_vm_name }}"
      delegate_to: localhost
"""
PLAYS["lookup.yml"] = _LOOKUP
PLAYS["lookup_once.yml"] = _LOOKUP + "      run_once: true\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=5)
    parser.add_argument("--data-mib", type=int, default=512, help="random data per VM disk (default 512)")
    parser.add_argument("--capacity-gib", type=int, default=4, help="virtual size of each disk (default 4)")
    parser.add_argument("--reruns", type=int, default=3)
    args = parser.parse_args(argv)

    os.makedirs(os.path.join(REPO, ".work"), exist_ok=True)
    need = 2.5 * args.vms * (args.data_mib + 64) * MIB  # OVAs + converted disks + one raw being packed
    free = shutil.disk_usage(os.path.join(REPO, ".work")).free
    if free < need:
        raise SystemExit(f"needs about {need / (1 << 30):.1f} GiB free beside the repo, has "
                         f"{free / (1 << 30):.1f} GiB: lower --data-mib or --vms")
    workdir = os.path.join(REPO, ".work", "test-cache", "build")
    os.makedirs(workdir, exist_ok=True)
    daemon = ensure_libvirtd(os.path.join(REPO, ".work", "test-libvirtd"))
    tag = uuid.uuid4().hex[:6]
    pool_name = f"v2kvm-bench-{tag}"
    pool_path = f"/var/lib/libvirt/images/{pool_name}"
    names = [f"v2kvm-bench-{tag}-{i}" for i in range(args.vms)]
    scratch = tempfile.mkdtemp(prefix="bench-fleet-", dir=os.path.join(REPO, ".work"))
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            sources = list(pool.map(lambda i: build_vm(i, scratch, workdir, args.data_mib, args.capacity_gib),
                                    range(args.vms)))
        print(f"built {args.vms} OVAs in {time.monotonic() - started:.0f} s: each a {args.capacity_gib} GiB disk "
              f"holding {args.data_mib} MiB of random data + the boot partition "
              f"({os.path.getsize(sources[0]) / MIB:.0f} MiB per OVA)")
        hosts = {f"vm{i}": {"migrate_vm_source_path": source, "migrate_vm_name": names[i]}
                 for i, source in enumerate(sources)}
        inventory = write_inventory(os.path.join(scratch, "inventory.yml"), {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "migrate_vm_storage_pool": pool_name,
            "migrate_vm_storage_pool_path": pool_path,
            "migrate_vm_network_map": {"VM Network": "user"},
            "migrate_vm_boot_timeout": 600,
        }, hosts)
        os.sync()
        first, _run = timed_playbook("migrate.yml", inventory)
        reruns = []
        for _round in range(args.reruns):
            seconds, rerun = timed_playbook("migrate.yml", inventory)
            changed = sum(s["changed"] for s in rerun.stats.values())
            if changed:
                raise SystemExit(f"re-run changed {changed} tasks; it must change nothing")
            reruns.append(seconds)
        again = statistics.median(reruns)
        piped, _run = timed_playbook("migrate.yml", inventory, env={"ANSIBLE_PIPELINING": "1"})

        plays = os.path.join(scratch, "plays")
        os.makedirs(plays)
        for name, text in PLAYS.items():
            with open(os.path.join(plays, name), "w") as handle:
                handle.write(text % {"repo": REPO})
        parts = {}
        for name in PLAYS:
            for pipelining in ("0", "1"):
                parts[name, pipelining] = statistics.median(
                    timed_playbook(name, inventory, env={"ANSIBLE_PIPELINING": pipelining}, playbook_dir=plays)[0]
                    for _round in range(args.reruns))

        print(f"fleet of {args.vms} VMs, each {args.data_mib} MiB of random data on a {args.capacity_gib} GiB disk "
              f"(TCG boot validation, content compare on)")
        print(f"  first run   {first:7.2f} s")
        print(f"  re-run      {again:7.2f} s   (median of {args.reruns}: "
              f"{', '.join('%.2f' % s for s in reruns)}; 0 changed)")
        print(f"  ratio       {again / first:7.3f}x   (goal <= 0.03x)")
        print(f"  re-run with ANSIBLE_PIPELINING=1: {piped:.2f} s, ratio {piped / first:.3f}x")
        print("where the re-run's time goes (plays over the same hosts, median wall seconds; pipelining off / on):")
        labels = {"empty.yml": "empty play (ansible-playbook start-up, 5 hosts)",
                  "argspec.yml": "role argument check only",
                  "lookup.yml": "migration_state per VM, as the role runs it",
                  "lookup_once.yml": "one migration_state run for the play (run_once)"}
        for name, label in labels.items():
            print(f"  {label:48s} {parts[name, '0']:5.2f} s / {parts[name, '1']:5.2f} s")
    finally:
        remove_migration("qemu:///system", names, pool_name, pool_path)
        shutil.rmtree(scratch, ignore_errors=True)
        daemon.stop()


if __name__ == "__main__":
    main()
