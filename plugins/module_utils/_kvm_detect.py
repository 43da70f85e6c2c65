# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide whether guests on a libvirt host can use KVM, by watching a guest actually run.

A readable /dev/kvm proves nothing: on some nested or restricted hosts KVM_CREATE_VM works
while guests never get anywhere (their vCPU burns 100% CPU and prints nothing). vCPU time
growing is therefore no evidence either. The decisive probe boots a throwaway transient
domain with no disk under ``type='kvm'`` and SeaBIOS writing to the serial console
(``<bios useserial='yes'/>``): working KVM prints "No bootable device" within a fraction of
a second. KVM only counts as working when it gets there within the deadline AND no slower
than the same probe under TCG - hardware virtualisation slower than pure emulation means the
"hardware" is itself being emulated, and real kernels hang there.

Cheap checks run first and short-circuit (no /dev/kvm, no vmx/svm flag, libvirt has no kvm
domain type). Results are cached per host boot in a small JSON file.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
import uuid

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12
PROBE_BANNER = b"No bootable device"
PROBE_DEADLINE = 2.0
CACHE_DIRS = ("/run/v2kvm", "/var/lib/libvirt/v2kvm")
CACHE_FILE = "kvm-probe.json"
CACHE_VERSION = 1


def check_dev_kvm(path="/dev/kvm"):
    """(ok, detail): /dev/kvm opens, speaks API 12 and lets us create (and drop) a VM."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, "%s cannot be opened: %s" % (path, exc.strerror)
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            return False, "%s speaks KVM API %d, expected %d" % (path, version, KVM_API_VERSION)
        vm_fd = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm_fd)
    except OSError as exc:
        return False, "KVM ioctl on %s failed: %s" % (path, exc.strerror)
    finally:
        os.close(fd)
    return True, "%s opens and KVM_CREATE_VM succeeds" % path


def check_cpu_flags(cpuinfo="/proc/cpuinfo"):
    """(ok, detail): the CPU advertises vmx (Intel VT-x) or svm (AMD-V)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    for flag in ("vmx", "svm"):
                        if flag in flags:
                            return True, "CPU flag %s present" % flag
                    hint = " (this is a guest: the hypervisor does not pass nested virtualisation through)" \
                        if "hypervisor" in flags else ""
                    return False, "CPU has neither vmx nor svm%s" % hint
    except OSError as exc:
        return False, "%s unreadable: %s" % (cpuinfo, exc.strerror)
    return False, "%s has no flags line" % cpuinfo


def check_libvirt_kvm(conn):
    """(ok, detail): libvirt offers the kvm domain type for x86_64."""
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
    except Exception as exc:  # libvirtError; kept generic so this module imports without libvirt
        return False, "libvirt offers no kvm domain type: %s" % exc
    return True, "libvirt domain capabilities list kvm"


def _probe_xml(virt_type, log_path):
    name = "v2kvm-kvm-probe-%s" % uuid.uuid4().hex[:12]
    return name, (
        "<domain type='%s'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><bios useserial='yes'/></os>"
        "<devices><serial type='pty'><log file='%s' append='off'/></serial></devices>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot></domain>"
        % (virt_type, name, log_path))


def time_to_banner(conn, virt_type, log_dir, deadline):
    """Seconds a diskless transient domain takes to print SeaBIOS's banner, or None on timeout."""
    import libvirt  # only called with libvirt available

    log_path = os.path.join(log_dir, "v2kvm-kvm-probe-%s-%d.log" % (virt_type, os.getpid()))
    name, xml = _probe_xml(virt_type, log_path)
    # AUTODESTROY: if this process dies mid-probe, libvirt kills the guest with the connection.
    dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY)
    started = time.monotonic()
    try:
        while time.monotonic() - started < deadline:
            try:
                with open(log_path, "rb") as handle:
                    if PROBE_BANNER in handle.read():
                        return time.monotonic() - started
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        return None
    finally:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        try:
            os.unlink(log_path)
        except OSError:
            pass


def probe_guest_runs(conn, log_dir, deadline=PROBE_DEADLINE):
    """(ok, detail, timings) from the boot probe described in the module docstring."""
    kvm_seconds = time_to_banner(conn, "kvm", log_dir, deadline)
    timings = {"kvm": kvm_seconds}
    if kvm_seconds is None:
        return False, ("a KVM guest did not reach the SeaBIOS banner within %.1f s (its vCPU may still "
                       "burn CPU time: that is not progress)" % deadline), timings
    tcg_seconds = time_to_banner(conn, "qemu", log_dir, max(deadline, 10.0))
    timings["qemu"] = tcg_seconds
    # Working KVM is many times faster than TCG; allow slack for a loaded host.
    if tcg_seconds is not None and kvm_seconds > tcg_seconds * 1.5 + 0.25:
        return False, ("a KVM guest needed %.2f s where TCG needed %.2f s: KVM is emulated or trapped "
                       "here and real guests hang" % (kvm_seconds, tcg_seconds)), timings
    return True, "a KVM guest reached the SeaBIOS banner in %.2f s" % kvm_seconds, timings


def _host_key(conn):
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot_id = handle.read().strip()
    except OSError:
        boot_id = None
    return {
        "version": CACHE_VERSION,
        "hostname": conn.getHostname(),
        "uri": conn.getURI(),
        "boot_id": boot_id,
        "libvirt": conn.getLibVersion(),
        "hypervisor": conn.getVersion(),
    }


def _read_cache(cache_dirs, key):
    for directory in cache_dirs:
        try:
            with open(os.path.join(directory, CACHE_FILE), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if data.get("key") == key:
            return data.get("result")
    return None


def _write_cache(cache_dirs, key, result):
    for directory in cache_dirs:
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            path = os.path.join(directory, CACHE_FILE)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"key": key, "result": result}, handle, sort_keys=True)
            os.replace(tmp, path)
            return path
        except OSError:
            continue
    return None


def detect_domain_type(conn, *, local=True, probe=True, use_cache=True, cache_dirs=CACHE_DIRS,
                       deadline=PROBE_DEADLINE):
    """{"domain_type": "kvm"|"qemu", "reason", "checks": [...], "cached": bool}.

    ``local`` says whether the daemon runs on this machine; only then are /dev/kvm and
    /proc/cpuinfo here relevant. The boot probe needs a log directory the daemon can write
    and this process can read, which again only exists locally; a remote host is judged by
    its domain capabilities alone. ``probe=False`` (check mode) skips the boot probe and
    neither trusts nor caches a KVM verdict beyond the cheap checks.
    """
    key = _host_key(conn) if use_cache else None
    if use_cache:
        cached = _read_cache(cache_dirs, key)
        if cached is not None:
            return dict(cached, cached=True)

    checks = []

    def finish(domain_type, reason, cache=True):
        result = {"domain_type": domain_type, "reason": reason, "checks": checks}
        if use_cache and cache:
            _write_cache(cache_dirs, key, result)
        return dict(result, cached=False)

    steps = [("libvirt", lambda: check_libvirt_kvm(conn))]
    if local:
        steps = [("dev_kvm", check_dev_kvm), ("cpu_flags", check_cpu_flags)] + steps
    for name, step in steps:
        ok, detail = step()
        checks.append({"name": name, "ok": ok, "detail": detail})
        if not ok:
            return finish("qemu", detail)
    if not local:
        return finish("kvm", "remote host: libvirt offers kvm (the boot probe needs local log access)")
    if not probe:
        return finish("kvm", "cheap checks pass; the boot probe was skipped (check mode), so KVM is unverified",
                      cache=False)
    log_dir = _probe_log_dir(cache_dirs)
    ok, detail, timings = probe_guest_runs(conn, log_dir, deadline)
    checks.append({"name": "boot_probe", "ok": ok, "detail": detail, "seconds": timings})
    return finish("kvm" if ok else "qemu", detail)


def _probe_log_dir(cache_dirs):
    for directory in cache_dirs:
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            return directory
        except OSError:
            continue
    return tempfile.gettempdir()
