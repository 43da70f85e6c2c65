"""Check the demo's end state on the libvirt daemon: good guests running and booted, the
broken one gone without a trace. Read-only; prints one line per VM and exits 1 on a miss."""

import argparse
import sys
import libvirt
from defusedxml import ElementTree as ET


def serial_log(dom):
    root = ET.fromstring(dom.XMLDesc(0))
    for node in root.findall("./devices/serial/log") + root.findall("./devices/serial/source"):
        path = node.get("file") or node.get("path")
        if path:
            return path
    return None


def booted(dom, marker):
    path = serial_log(dom)
    try:
        with open(path, errors="replace") as fh:
            return marker in fh.read()
    except (OSError, TypeError):
        return False


def leftover_volumes(conn, pool_name, vm):
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        pool.refresh(0)
    except libvirt.libvirtError:
        return []
    return [v for v in pool.listVolumes() if v.startswith(vm + "-disk")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default="qemu:///system")
    ap.add_argument("--pool", required=True)
    ap.add_argument("--expect-running", nargs="*", default=[])
    ap.add_argument("--expect-absent", nargs="*", default=[])
    args = ap.parse_args()
    # Lookups of absent domains are expected here; keep libvirt from printing them as errors.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(args.uri)
    ok = True
    for vm in args.expect_running:
        try:
            dom = conn.lookupByName(vm)
        except libvirt.libvirtError:
            print(f"  FAIL {vm}: no such domain")
            ok = False
            continue
        good = dom.isActive() and booted(dom, "V2KVM-BOOT-OK")
        ok &= bool(good)
        what = "running, console shows it booted" if good else "not running or no boot marker"
        print(f"  {'ok  ' if good else 'FAIL'} {vm}: {what}")
    for vm in args.expect_absent:
        try:
            conn.lookupByName(vm)
            present = True
        except libvirt.libvirtError:
            present = False
        vols = leftover_volumes(conn, args.pool, vm)
        good = not present and not vols
        ok &= good
        what = "rolled back, no domain and no volume left" if good else f"left behind: domain={present} volumes={vols}"
        print(f"  {'ok  ' if good else 'FAIL'} {vm}: {what}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
