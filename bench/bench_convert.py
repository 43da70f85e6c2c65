#!/usr/bin/env python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of v2kvm.migrate.disk_convert against bare qemu-img (prints ratios; not a test).

(a) the module's whole convert step (qemu-img convert + check + digest + fsync + rename +
    sidecar) vs bare `qemu-img convert` (default options) of the same streamOptimized image;
    goal <= 1.05x.
(b) a 20 GiB sparse disk holding 1 GiB of data vs a 1 GiB full disk with the same data,
    both through the module; goal <= 1.2x.

Scratch files go to a temporary directory under <repo>/.work (same filesystem as the repo,
never a tmpfs /tmp) and are deleted at the end. Runtime about 3-4 minutes.

    .venv/bin/python bench/bench_convert.py [ROUNDS]     # default 5; medians are compared
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
MODULE = os.path.join(REPO, "plugins", "modules", "disk_convert.py")
MIB = 1 << 20
GIB = 1 << 30
DATA = 1 * GIB
PIECE = 16 * MIB
ROUNDS = 5


def filesystem_type(path):
    best, fstype = "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _dev, mount, kind = line.split()[:3]
            if (path + "/").startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
                best, fstype = mount, kind
    return fstype


def data_piece(index):
    """16 MiB that compress about 2:1, like a typical OS disk: half random, half repetitive."""
    random_part = os.urandom(PIECE // 2)
    text = (b"v2kvm benchmark block %08d " % index) * (PIECE // 2 // 31 + 1)
    return random_part + text[: PIECE // 2]


def make_images(scratch):
    pieces = DATA // PIECE
    full_raw = os.path.join(scratch, "full.raw")
    sparse_raw = os.path.join(scratch, "sparse.raw")
    stride = 20 * GIB // pieces
    with open(full_raw, "wb") as full, open(sparse_raw, "wb") as sparse:
        sparse.truncate(20 * GIB)
        for index in range(pieces):
            data = data_piece(index)
            full.write(data)
            sparse.seek(index * stride)
            sparse.write(data)
    images = {}
    for name, raw in (("full", full_raw), ("sparse", sparse_raw)):
        vmdk = os.path.join(scratch, name + ".vmdk")
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
                        raw, vmdk], check=True)
        os.unlink(raw)
        images[name] = vmdk
    return images


def bare_convert(src, dest, durable=False):
    started = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-f", "vmdk", "-O", "qcow2", src, dest], check=True)
    if durable:
        # qemu-img convert defaults to cache=unsafe and never flushes; the module must.
        fd = os.open(dest, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.monotonic() - started
    os.unlink(dest)
    return elapsed


def module_convert(src, dest, scratch, verify="digest"):
    args = {"src": src, "dest": dest, "verify": verify, "force": True,
            "progress_file": os.path.join(scratch, "progress.jsonl")}
    args_file = os.path.join(scratch, "args.json")
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, MODULE, args_file], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    elapsed = time.monotonic() - started
    result = json.loads(proc.stdout)
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result["msg"])
    for path in (dest, os.path.join(scratch, ".%s.v2kvm.json" % os.path.basename(dest)),
                 os.path.join(scratch, "progress.jsonl")):
        if os.path.exists(path):
            os.unlink(path)
    return elapsed


def module_startup():
    """Python + AnsibleModule start-up, paid once per task whatever the disk."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import ansible.module_utils.basic"], check=True,
                   env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    return time.monotonic() - started


def interleaved(runs, rounds):
    """Run each variant once per round, in turn, so machine noise hits all alike.

    Dirty pages are written out (not timed) before every run: bare qemu-img leaves its output in
    the page cache, and the disk writes would otherwise land on whichever variant runs next.
    """
    times = {name: [] for name in runs}
    names = list(runs)
    for number in range(rounds):
        # Each round starts one variant later, so none always runs right after the same neighbour.
        for name in names[number % len(names):] + names[:number % len(names)]:
            os.sync()
            times[name].append(runs[name]())
        print("  round %d done, load average %.2f" % (number + 1, os.getloadavg()[0]), flush=True)
    return times


def show(label, seconds, base=None):
    line = "    %-34s median %6.2f s  min %6.2f s" % (label, statistics.median(seconds), min(seconds))
    if base:
        line += "  ratio(median) %.3f" % (statistics.median(seconds) / statistics.median(base))
    print(line)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    os.makedirs(os.path.join(REPO, ".work"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="bench-convert-", dir=os.path.join(REPO, ".work"))
    print("scratch %s on %s; load average %s" % (scratch, filesystem_type(scratch), os.getloadavg()))
    try:
        started = time.monotonic()
        images = make_images(scratch)
        print("made images in %.1f s: full.vmdk %d MiB, sparse.vmdk %d MiB" % (
            time.monotonic() - started, os.path.getsize(images["full"]) // MIB,
            os.path.getsize(images["sparse"]) // MIB))
        dest = os.path.join(scratch, "out.qcow2")
        full, sparse = images["full"], images["sparse"]
        bare_convert(full, dest)  # warm the page cache so no variant pays the first read

        times = interleaved({
            "bare": lambda: bare_convert(full, dest),
            "bare+fsync": lambda: bare_convert(full, dest, durable=True),
            "startup": module_startup,
            "none": lambda: module_convert(full, dest, scratch, "none"),
            "digest": lambda: module_convert(full, dest, scratch, "digest"),
            "compare": lambda: module_convert(full, dest, scratch, "compare"),
            "sparse": lambda: module_convert(sparse, dest, scratch, "digest"),
        }, rounds)
        bare, durable = times["bare"], times["bare+fsync"]
        startup = statistics.median(times["startup"])
        print("\n(a) 1 GiB of data, streamOptimized -> qcow2, %d interleaved rounds (goal: convert step <= 1.05x bare)"
              % rounds)
        show("bare qemu-img convert", bare)
        show("bare qemu-img convert + fsync", durable, bare)
        show("python+ansible start-up (per task)", times["startup"])
        for verify in ("none", "digest", "compare"):
            show("module verify=%s" % verify, times[verify], bare)
            step = [seconds - startup for seconds in times[verify]]
            show("  convert step (minus start-up)", step, bare)
            show("  convert step vs bare+fsync", step, durable)
        print("\n(b) module, verify=digest: 20 GiB sparse holding 1 GiB vs 1 GiB full (goal <= 1.2x)")
        show("1 GiB full", times["digest"])
        show("20 GiB sparse", times["sparse"], times["digest"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
