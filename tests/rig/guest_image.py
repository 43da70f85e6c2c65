"""Tiny bootable raw disk images for the test rig, built offline from the host's kernel.

Nothing is mounted and no loop device is used: the partition table is written by sfdisk on the
image file, the FAT file system by mtools at a byte offset, and the boot loader by
``syslinux --offset``. The guest is the host kernel plus a busybox initramfs whose /init prints:

    V2KVM-BOOT-OK <marker>
    V2KVM-DISKS <block devices seen, e.g. vda vdb>
    V2KVM-TICK 1
    V2KVM-TICK 2
    ...

The marker lives on the kernel command line in the disk's own syslinux.cfg, so every disk shares
one cached initramfs yet still proves *which* disk booted.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from rig.digests import file_sha256

BOOT_OK = "V2KVM-BOOT-OK"
DISKS = "V2KVM-DISKS"
TICK = "V2KVM-TICK"
PANIC = "Kernel panic - not syncing"

MBR_BIN = "/usr/lib/syslinux/mbr/mbr.bin"
SYSLINUX_EFI = "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"
LDLINUX_E64 = "/usr/lib/syslinux/modules/efi64/ldlinux.e64"
BUSYBOX = "/bin/busybox"
ESP_TYPE_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
# FAT16 with LBA: mformat picks FAT16 for the partition sizes used here.
MBR_FAT_TYPE = "e"

# virtio_blk is what the rig's guests use; the SCSI/SATA/IDE drivers are there so a guest
# defined with the source's bus (sata, scsi, ide) still lists its disks.
REQUIRED_MODULES = ("virtio", "virtio_ring", "virtio_pci", "virtio_blk")
EXTRA_MODULES = ("virtio_scsi", "sd_mod", "ahci", "ata_piix")

MARKER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
PART_START_SECTOR = 2048
SECTOR = 512
FILLER_BYTES = 2 * 1024 * 1024

# The recipe version feeds every cache key: bump it when the init script or layout changes.
RECIPE_VERSION = "1"

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
marker=unknown
for word in $(/bin/busybox cat /proc/cmdline); do
    case "$word" in
        v2kvm.marker=*) marker="${word#v2kvm.marker=}" ;;
        v2kvm.dirty=*) dirty="${word#v2kvm.dirty=}" ;;
    esac
done
echo "V2KVM-BOOT-OK $marker"
if [ -n "$dirty" ]; then
    # Rewrites DIRTY MiB of RAM (the initramfs root is in memory) without pause: a live migration's
    # pre-copy of this guest never converges, which is what post-copy escalation is for.
    while true; do /bin/busybox dd if=/dev/urandom of=/dirty bs=1M count="$dirty" 2>/dev/null; done &
fi
while read -r module; do
    /bin/busybox insmod "/lib/modules/$module" 2>/dev/null
done </lib/modules/load-order
# Disk probing finishes asynchronously after insmod returns: wait until the list is stable.
previous=""
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    current=$(cd /sys/block && /bin/busybox ls -d vd* sd* hd* nvme* 2>/dev/null | /bin/busybox tr '\\n' ' ')
    [ -n "$current" ] && [ "$current" = "$previous" ] && break
    previous="$current"
    /bin/busybox sleep 0.3
done
echo "V2KVM-DISKS" $current
n=0
while true; do
    n=$((n + 1))
    echo "V2KVM-TICK $n"
    /bin/busybox sleep 1
done
"""


class GuestImageError(RuntimeError):
    """A guest image could not be built; the message names the missing piece and the fix."""


def _run(argv, **kwargs):
    try:
        return subprocess.run(argv, check=True, capture_output=True, **kwargs)
    except FileNotFoundError as exc:
        raise GuestImageError(f"{argv[0]} is not installed: install it (see the rig's apt packages)") from exc
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise GuestImageError(f"{' '.join(map(str, argv))} failed: {stderr.strip()}") from exc


def _require_file(path, package):
    if not os.path.isfile(path):
        raise GuestImageError(f"{path} is missing: apt-get install -y {package}")


def host_kernel():
    """(version, vmlinuz path) of the newest /boot kernel that has a module tree with virtio_blk."""
    candidates = []
    for path in glob.glob("/boot/vmlinuz-*"):
        version = os.path.basename(path)[len("vmlinuz-"):]
        if glob.glob(f"/lib/modules/{version}/kernel/drivers/block/virtio_blk.ko*"):
            candidates.append((version, path))
    if not candidates:
        raise GuestImageError(
            "no /boot/vmlinuz-* with a matching /lib/modules/<version> holding virtio_blk: "
            "apt-get install -y linux-image-amd64"
        )
    # Newest by modification time, the way a freshly installed kernel would win.
    return max(candidates, key=lambda item: os.path.getmtime(item[1]))


def _module_path(version, name):
    return _run(["modinfo", "-k", version, "-n", name], text=True).stdout.strip()


def _module_depends(version, name):
    out = _run(["modinfo", "-k", version, "-F", "depends", name], text=True).stdout.strip()
    return [dep for dep in out.split(",") if dep]


def module_load_order(version, names):
    """Module files in dependency order (dependencies first), resolved with modinfo."""
    ordered = []
    seen = set()

    def visit(name):
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        for dep in _module_depends(version, name):
            visit(dep)
        path = _module_path(version, name)
        # "(builtin)" or similar: nothing to load.
        if path.startswith("/"):
            ordered.append(path)

    for module in names:
        visit(module)
    return ordered


def _write_cpio_gz(staging, out_path):
    names = sorted(
        os.path.relpath(os.path.join(root, entry), staging)
        for root, dirs, files in os.walk(staging)
        for entry in dirs + files
    )
    listing = ("\n".join(names) + "\n").encode()
    archive = _run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=staging, input=listing).stdout
    tmp = out_path + ".tmp"
    # mtime=0 keeps the archive byte-identical between builds of the same inputs.
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(archive)
    os.replace(tmp, out_path)


def _decompressed_module(src, dest):
    if src.endswith(".xz"):
        data = _run(["xz", "-dc", src]).stdout
    elif src.endswith(".zst"):
        data = _run(["zstd", "-dc", src]).stdout
    elif src.endswith(".gz"):
        data = _run(["gzip", "-dc", src]).stdout
    else:
        shutil.copyfile(src, dest)
        return
    with open(dest, "wb") as handle:
        handle.write(data)


def _module_file_name(src):
    base = os.path.basename(src)
    for suffix in (".xz", ".zst", ".gz"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _build_initramfs(out_path, version):
    _require_file(BUSYBOX, "busybox-static")
    modules = module_load_order(version, REQUIRED_MODULES + EXTRA_MODULES)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_path)) as staging:
        for sub in ("bin", "dev", "proc", "sys", "lib/modules"):
            os.makedirs(os.path.join(staging, sub))
        shutil.copyfile(BUSYBOX, os.path.join(staging, "bin", "busybox"))
        os.chmod(os.path.join(staging, "bin", "busybox"), 0o700)
        os.symlink("busybox", os.path.join(staging, "bin", "sh"))
        init = os.path.join(staging, "init")
        with open(init, "w", encoding="ascii") as handle:
            handle.write(INIT_SCRIPT)
        os.chmod(init, 0o700)
        # insmod does not read modules.dep, so the order written here is the load order.
        names = []
        for src in modules:
            name = _module_file_name(src)
            _decompressed_module(src, os.path.join(staging, "lib", "modules", name))
            names.append(name)
        with open(os.path.join(staging, "lib", "modules", "load-order"), "w", encoding="ascii") as handle:
            handle.write("\n".join(names) + "\n")
        _write_cpio_gz(staging, out_path)


def _build_broken_initramfs(out_path):
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_path)) as staging:
        init = os.path.join(staging, "init")
        # Executable but not a program: the kernel fails to run it, finds no fallback init and panics.
        with open(init, "wb") as handle:
            handle.write(b"\x00V2KVM broken init: not an executable\x00")
        os.chmod(init, 0o700)
        _write_cpio_gz(staging, out_path)


def boot_inputs(workdir, *, broken=False):
    """Return (kernel path, initramfs path), building the initramfs once per workdir and inputs."""
    version, kernel = host_kernel()
    key_source = json.dumps(
        {
            "recipe": RECIPE_VERSION,
            "kernel": version,
            "kernel_mtime": os.path.getmtime(kernel),
            "busybox": os.path.getsize(BUSYBOX) if os.path.exists(BUSYBOX) else None,
            "init": INIT_SCRIPT,
            "modules": REQUIRED_MODULES + EXTRA_MODULES,
            "broken": broken,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    cache = os.path.join(workdir, "guest-cache")
    os.makedirs(cache, exist_ok=True)
    initramfs = os.path.join(cache, f"initramfs-{'broken-' if broken else ''}{key}.cpio.gz")
    if not os.path.exists(initramfs):
        if broken:
            _build_broken_initramfs(initramfs)
        else:
            _build_initramfs(initramfs, version)
    return kernel, initramfs


def _syslinux_cfg(marker, dirty_mib=0):
    extra = f" v2kvm.dirty={int(dirty_mib)}" if dirty_mib else ""
    return (
        "DEFAULT v2kvm\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL v2kvm\n"
        "  KERNEL /vmlinuz\n"
        "  INITRD /initrd.gz\n"
        f"  APPEND console=ttyS0,115200 quiet panic=0 v2kvm.marker={marker}{extra}\n"
    )


def _filler(marker, size):
    # Deterministic per marker, incompressible: conversions move real bytes and disks differ.
    return random.Random(f"v2kvm-filler-{marker}").randbytes(size)


def _create_sparse(path, capacity_bytes):
    with open(path, "wb") as handle:
        handle.truncate(capacity_bytes)


def _partition(path, label, part_type, bootable):
    script = f"label: {label}\nstart={PART_START_SECTOR}, type={part_type}{', bootable' if bootable else ''}\n"
    _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path], input=script.encode())
    table = json.loads(_run(["sfdisk", "--json", path], text=True).stdout)["partitiontable"]
    part = table["partitions"][0]
    return part["start"] * SECTOR, part["size"]


def _mtools_env():
    # mtools refuses images whose geometry it dislikes unless told to skip the check.
    env = dict(os.environ)
    env["MTOOLS_SKIP_CHECK"] = "1"
    return env


def _format_fat(path, offset, sectors, volume_label):
    image = f"{path}@@{offset}"
    _run(
        ["mformat", "-i", image, "-T", str(sectors), "-h", "64", "-s", "32",
         "-H", str(offset // SECTOR), "-v", volume_label, "::"],
        env=_mtools_env(),
    )
    return image


def _mcopy(image, src, dest):
    _run(["mcopy", "-o", "-i", image, src, dest], env=_mtools_env())


def _mmd(image, dest):
    _run(["mmd", "-i", image, dest], env=_mtools_env())


def make_boot_disk(path, *, marker, firmware="bios", capacity_mib=64, broken=False, workdir, dirty_mib=0):
    """Write a raw bootable disk at ``path`` and return ``path``.

    firmware "bios": MBR + a bootable FAT partition with syslinux. firmware "uefi" (or "efi"):
    GPT + an EFI system partition with syslinux.efi as EFI/BOOT/BOOTX64.EFI. ``broken`` boots
    the kernel with an initramfs whose /init cannot run, so the console shows a kernel panic.
    ``dirty_mib`` makes the guest rewrite that much of its RAM forever after booting.
    """
    if not MARKER_RE.match(marker):
        raise GuestImageError(f"marker {marker!r} must match {MARKER_RE.pattern} (it goes on the kernel command line)")
    firmware = {"efi": "uefi"}.get(firmware, firmware)
    if firmware not in ("bios", "uefi"):
        raise GuestImageError(f"firmware {firmware!r} is not supported: use 'bios' or 'uefi'")
    if capacity_mib < 32:
        raise GuestImageError(f"capacity_mib={capacity_mib} is too small for kernel + initramfs: use 32 or more")
    if firmware == "bios":
        _require_file(MBR_BIN, "syslinux-common")
        if shutil.which("syslinux") is None:
            raise GuestImageError("syslinux is not installed: apt-get install -y syslinux")
    else:
        _require_file(SYSLINUX_EFI, "syslinux-efi")
        _require_file(LDLINUX_E64, "syslinux-common")

    kernel, initramfs = boot_inputs(workdir, broken=broken)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.partial"
    _create_sparse(tmp, capacity_mib * 1024 * 1024)
    try:
        if firmware == "bios":
            offset, sectors = _partition(tmp, "dos", MBR_FAT_TYPE, bootable=True)
        else:
            offset, sectors = _partition(tmp, "gpt", ESP_TYPE_GUID, bootable=False)
        image = _format_fat(tmp, offset, sectors, "V2KVMBOOT")
        with tempfile.TemporaryDirectory(dir=workdir) as staging:
            cfg = os.path.join(staging, "syslinux.cfg")
            with open(cfg, "w", encoding="ascii") as handle:
                handle.write(_syslinux_cfg(marker, dirty_mib))
            filler = os.path.join(staging, "filler.bin")
            with open(filler, "wb") as handle:
                handle.write(_filler(marker, FILLER_BYTES))
            _mcopy(image, kernel, "::/vmlinuz")
            _mcopy(image, initramfs, "::/initrd.gz")
            _mcopy(image, filler, "::/filler.bin")
            if firmware == "bios":
                _mcopy(image, cfg, "::/syslinux.cfg")
                _run(["syslinux", "--install", "--offset", str(offset), tmp], env=_mtools_env())
                with open(MBR_BIN, "rb") as handle:
                    boot_code = handle.read(440)
                with open(tmp, "r+b") as handle:
                    handle.write(boot_code)
            else:
                _mmd(image, "::/EFI")
                _mmd(image, "::/EFI/BOOT")
                _mcopy(image, SYSLINUX_EFI, "::/EFI/BOOT/BOOTX64.EFI")
                _mcopy(image, LDLINUX_E64, "::/EFI/BOOT/ldlinux.e64")
                _mcopy(image, cfg, "::/EFI/BOOT/syslinux.cfg")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def make_data_disk(path, *, capacity_mib=32, label="data", files):
    """Write a raw disk holding one ext4 file system (no partition table) with ``files``.

    ``files`` maps relative paths to bytes; sub-directories are created as needed.
    """
    if not files:
        raise GuestImageError("files is empty: give at least one {relative path: bytes} so the disk has known content")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.partial"
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as staging:
        root = os.path.join(staging, "root")
        os.makedirs(root)
        for rel, content in files.items():
            target = os.path.normpath(os.path.join(root, rel))
            if not target.startswith(root + os.sep):
                raise GuestImageError(f"file name {rel!r} escapes the file system root: use a relative path")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(content)
        _create_sparse(tmp, capacity_mib * 1024 * 1024)
        try:
            # Fixed UUID and hash seed keep rebuilt images comparable.
            _run(
                ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d", root,
                 "-U", "5f0e2b6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
                 "-E", "hash_seed=0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e", tmp],
                env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"},
            )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def file_digest(path):
    """Hex SHA-256 of a file (handy for comparing disks before and after a conversion)."""
    return file_sha256(path)
