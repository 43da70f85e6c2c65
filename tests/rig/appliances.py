"""The demo appliance set: small VMware-style OVAs whose guests really boot under TCG.

    python -m tests.rig.appliances OUTDIR        # from the repo root
    python tests/rig/appliances.py OUTDIR        # from anywhere

prints a JSON map of appliance name to OVA path. Each OVA is rebuilt only when it is missing or
its recipe hash (``<name>.ova.recipe``, beside it) no longer matches. The raw disks each OVA was
made from stay in ``workdir/raw/<name>-disk<N>.raw`` for byte comparisons after a migration.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile

if __package__ in (None, ""):
    # Run as a script: make the repo root importable so ``tests.rig`` resolves.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.rig import guest_image, ovf_package  # noqa: E402

DATA_FILES = {
    "README.txt": b"v2kvm demo data disk: these bytes must survive the migration unchanged.\n",
    "payload/numbers.bin": bytes(range(256)) * 64,
}

COMMON = {
    "vcpus": 1,
    "memory_mib": 256,
    "os_type": "debian12_64Guest",
    "network": "VM Network",
    "nic_model": "vmxnet3",
}

APPLIANCES = {
    "demo-bios": {
        "mac": "00:50:56:a1:00:01",
        "firmware": "bios",
        "disks": [{"kind": "boot", "marker": "demo-bios", "controller": "scsi", "unit": 0}],
        "annotation": "v2kvm demo: one disk, BIOS",
    },
    "demo-twodisk": {
        "mac": "00:50:56:a1:00:02",
        "firmware": "bios",
        "disks": [
            {"kind": "boot", "marker": "demo-twodisk", "controller": "scsi", "unit": 0},
            {"kind": "data", "controller": "sata", "unit": 1},
        ],
        "annotation": "v2kvm demo: boot disk on SCSI 0:0, data disk on SATA 0:1",
    },
    "demo-broken": {
        "mac": "00:50:56:a1:00:03",
        "firmware": "bios",
        "disks": [{"kind": "boot", "marker": "demo-broken", "broken": True, "controller": "scsi", "unit": 0}],
        "annotation": "v2kvm demo: boots the kernel, then panics (rollback case)",
    },
    "demo-uefi": {
        "mac": "00:50:56:a1:00:04",
        "firmware": "uefi",
        "disks": [{"kind": "boot", "marker": "demo-uefi", "controller": "scsi", "unit": 0}],
        "annotation": "v2kvm demo: one disk, UEFI",
    },
}

_RIG_SOURCES = ("guest_image.py", "ovf_package.py", "appliances.py")


def _recipe_hash(name):
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    digest.update(json.dumps({"name": name, "recipe": APPLIANCES[name], "common": COMMON}, sort_keys=True).encode())
    digest.update(repr(sorted(DATA_FILES.items())).encode())
    for source in _RIG_SOURCES:
        with open(os.path.join(here, source), "rb") as handle:
            digest.update(handle.read())
    version, kernel = guest_image.host_kernel()
    digest.update(f"{version}:{os.path.getmtime(kernel)}".encode())
    return digest.hexdigest()


def _build_raw_disks(name, recipe, workdir):
    raw_dir = os.path.join(workdir, "raw")
    paths = []
    for number, disk in enumerate(recipe["disks"], start=1):
        path = os.path.join(raw_dir, f"{name}-disk{number}.raw")
        if disk["kind"] == "boot":
            guest_image.make_boot_disk(path, marker=disk["marker"], firmware=recipe["firmware"],
                                       broken=disk.get("broken", False), workdir=workdir)
        else:
            guest_image.make_data_disk(path, label="data", files=DATA_FILES)
        paths.append(path)
    return paths


def build_appliance(name, outdir, workdir):
    """Build one appliance OVA into ``outdir`` (unconditionally) and return its path."""
    recipe = APPLIANCES[name]
    raw_paths = _build_raw_disks(name, recipe, workdir)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=f"{name}-") as staging:
        disks = []
        vmdks = []
        for number, (raw, disk) in enumerate(zip(raw_paths, recipe["disks"]), start=1):
            vmdk = ovf_package.to_vmdk(raw, os.path.join(staging, f"{name}-disk{number}.vmdk"), "streamOptimized")
            vmdks.append(vmdk)
            disks.append(ovf_package.disk_entry(vmdk, disk_id=f"vmdisk{number}", controller=disk["controller"],
                                                unit=disk["unit"], raw_path=raw))
        ovf = ovf_package.write_ovf(
            os.path.join(staging, f"{name}.ovf"),
            name=name,
            vcpus=COMMON["vcpus"],
            memory_mib=COMMON["memory_mib"],
            firmware=recipe["firmware"],
            os_type=COMMON["os_type"],
            os_description="Debian GNU/Linux 12 (64-bit)",
            disks=disks,
            nics=[{"mac": recipe["mac"], "network": COMMON["network"], "model": COMMON["nic_model"]}],
            annotation=recipe["annotation"],
        )
        out = os.path.join(outdir, f"{name}.ova")
        staged_ova = ovf_package.make_ova(os.path.join(staging, f"{name}.ova"), ovf, vmdks, digest="sha256")
        shutil.move(staged_ova, out)
    return out


def build_demo_set(outdir, workdir=None):
    """Build (or reuse) every demo OVA in ``outdir``; return {name: absolute OVA path}."""
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    workdir = os.path.abspath(workdir or os.path.join(outdir, ".rig-work"))
    os.makedirs(workdir, exist_ok=True)
    result = {}
    for name in APPLIANCES:
        out = os.path.join(outdir, f"{name}.ova")
        stamp = f"{out}.recipe"
        want = _recipe_hash(name)
        try:
            with open(stamp, encoding="ascii") as handle:
                have = handle.read().strip()
        except FileNotFoundError:
            have = None
        if have != want or not os.path.isfile(out):
            build_appliance(name, outdir, workdir)
            with open(stamp, "w", encoding="ascii") as handle:
                handle.write(want + "\n")
        result[name] = out
    return result


def raw_disk_paths(name, workdir):
    """The raw images appliance ``name`` was built from (after :func:`build_demo_set`)."""
    count = len(APPLIANCES[name]["disks"])
    return [os.path.join(workdir, "raw", f"{name}-disk{number}.raw") for number in range(1, count + 1)]


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m tests.rig.appliances OUTDIR [WORKDIR]", file=sys.stderr)
        return 2
    print(json.dumps(build_demo_set(*args), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
