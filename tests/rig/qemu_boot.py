"""Boot disk images straight under qemu (TCG, no libvirt) to prove the rig's guests work."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


class BootTimeout(TimeoutError):
    """The pattern did not appear on the console in time; the message carries the console tail."""


class BootFailed(RuntimeError):
    """qemu exited before the pattern appeared."""


def _disk_format(path):
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", path], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)["format"]


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def boot_and_wait(disk_paths, *, firmware, pattern, timeout, log_path, memory_mib=256, machine="q35"):
    """Boot ``disk_paths`` (first one boots) and return the console text once ``pattern`` shows.

    ``pattern`` is a regular expression searched in the serial console output. Disks are
    attached as virtio with ``snapshot=on`` so the images are never written. qemu is always
    killed before returning or raising.
    """
    firmware = {"efi": "uefi"}.get(firmware, firmware)
    if firmware not in ("bios", "uefi"):
        raise ValueError(f"firmware {firmware!r} is not supported: use 'bios' or 'uefi'")
    if shutil.which("qemu-system-x86_64") is None:
        raise BootFailed("qemu-system-x86_64 is not installed: apt-get install -y qemu-system-x86")
    regex = re.compile(pattern)
    log_path = os.fspath(log_path)
    if os.path.exists(log_path):
        os.unlink(log_path)
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", machine, "-m", str(memory_mib),
        "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
        "-serial", f"file:{log_path}",
    ]
    with tempfile.TemporaryDirectory(prefix="v2kvm-qemu-") as scratch:
        if firmware == "uefi":
            for required in (OVMF_CODE, OVMF_VARS):
                if not os.path.isfile(required):
                    raise BootFailed(f"{required} is missing: apt-get install -y ovmf")
            vars_copy = os.path.join(scratch, "OVMF_VARS.fd")
            shutil.copyfile(OVMF_VARS, vars_copy)
            argv += [
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            ]
        for disk in disk_paths:
            disk = os.fspath(disk)
            # A comma in a path would split qemu's option string; doubling it escapes it.
            argv += ["-drive", f"file={disk.replace(',', ',,')},format={_disk_format(disk)},if=virtio,snapshot=on"]
        env = dict(os.environ, TMPDIR=scratch)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        try:
            while True:
                text = _read(log_path)
                if regex.search(text):
                    return text
                if proc.poll() is not None:
                    output = proc.stdout.read().decode(errors="replace")
                    raise BootFailed(
                        f"qemu exited with {proc.returncode} before {pattern!r} appeared; "
                        f"qemu said: {output.strip()!r}; console tail: {text[-2000:]!r}"
                    )
                if time.monotonic() > deadline:
                    raise BootTimeout(f"{pattern!r} did not appear within {timeout}s; console tail: {text[-2000:]!r}")
                time.sleep(0.2)
        finally:
            _stop(proc)
            proc.stdout.close()
