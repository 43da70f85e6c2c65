# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cold migration of a libvirt domain from one KVM node to another.

Shut down (force only when allowed), stream each disk volume from the source pool to the target pool
through libvirt (sparse, so holes stay holes), define on the target, start it and judge its boot from
the serial console read through libvirt, and only then undefine the source. Any failure removes what
the target got and starts the source again if it was running.

Plain Python over libvirt-python, free of Ansible imports.
"""

from __future__ import annotations

import time
from xml.etree import ElementTree

from ansible_collections.v2kvm.migrate.plugins.module_utils._console_watch import start_and_judge
from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_migration import (
    MigrationFailed, MigrationRefused, remove_new_volumes, undefine_flags)
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import (
    domain_disks, parse_xml, volume_format)
from ansible_collections.v2kvm.migrate.plugins.module_utils._serial_verdict import (
    DEFAULT_FAILURE_PATTERNS, DEFAULT_SUCCESS_PATTERN, compile_patterns)

try:
    import libvirt
except ImportError:  # the module reports missing_required_lib before calling anything here
    libvirt = None


def _volume_physical(vol):
    root = parse_xml(vol.XMLDesc(0))
    for tag in ("physical", "capacity"):
        text = root.findtext(tag)
        if text:
            return int(text)
    return int(vol.info()[1])


def shut_down(dom, timeout, force, clock=time.monotonic, sleep=time.sleep):
    """Shut the guest down; power it off after ``timeout`` only when ``force``. Returns how it stopped."""
    if not dom.isActive():
        return "already off"
    try:
        dom.shutdown()
    except libvirt.libvirtError:
        pass  # no ACPI handler: the wait below ends in force or refusal
    deadline = clock() + timeout
    while clock() < deadline:
        if not dom.isActive():
            return "shut down"
        sleep(0.5)
    if not force:
        raise MigrationFailed("VM %s did not shut down within %d s: set force_shutdown=true to power it off, "
                              "or a longer shutdown_timeout" % (dom.name(), timeout))
    dom.destroy()
    return "powered off after %d s" % timeout


def copy_volume(src_conn, dst_conn, path, dst_pool, progress=None, done_before=0, total=0):
    """Stream the volume at ``path`` into ``dst_pool`` under the same name; return (new path, bytes)."""
    src_vol = src_conn.storageVolLookupByPath(path)
    name = src_vol.name()
    fmt = volume_format(src_vol) or "raw"
    try:
        dst_pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        pass
    else:
        raise MigrationRefused("volume %s already exists in pool %s on the target: remove it or pick another "
                               "target_pool" % (name, dst_pool.name()))
    capacity = int(parse_xml(src_vol.XMLDesc(0)).findtext("capacity"))
    dst_vol = dst_pool.createXML(
        "<volume><name>%s</name><capacity unit='bytes'>%d</capacity><allocation>0</allocation>"
        "<target><format type='%s'/></target></volume>" % (name, capacity, fmt), 0)
    new_path = dst_vol.path()
    src_stream = src_conn.newStream(0)
    dst_stream = dst_conn.newStream(0)
    counter = {"done": 0}
    try:
        src_vol.download(src_stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
        dst_vol.upload(dst_stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)

        def data(_stream, buf, _opaque):
            sent = dst_stream.send(buf)
            counter["done"] += len(buf)
            if progress is not None:
                progress.update("copy-disks", done_before + counter["done"], total)
            return sent

        def hole(_stream, length, _opaque):
            dst_stream.sendHole(length, 0)
            counter["done"] += length
            return 0

        src_stream.sparseRecvAll(data, hole, None)
        src_stream.finish()
        dst_stream.finish()
    except BaseException:
        for stream in (src_stream, dst_stream):
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        try:
            dst_vol.delete(0)
        except libvirt.libvirtError:
            pass
        raise
    return new_path, counter["done"]


def retarget_disks(domain_xml, new_paths):
    """The domain XML with each disk source path replaced per ``new_paths`` ({old: new})."""
    root = parse_xml(domain_xml)
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        if source is not None and source.get("file") in new_paths:
            source.set("file", new_paths[source.get("file")])
    return ElementTree.tostring(root, encoding="unicode")


def cold_migrate(src_conn, dst_conn, src_dom, opts, progress=None):
    """Shut down, copy, define, start, validate, then undefine the source. Returns a summary dict.

    ``opts``: copy_storage, target_pool, shutdown_timeout, force_shutdown, start, validate_seconds,
    success_pattern, failure_patterns, require_success_pattern, remove_source_storage.
    """
    name = src_dom.name()
    was_running = bool(src_dom.isActive())
    domain_xml = src_dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    disks = domain_disks(domain_xml)  # without a connection: file disks only
    created_paths = []
    dst_dom = None
    new_paths = {}
    copied = 0
    try:
        # Inside the rollback: a stop while the guest shuts down must start it again on the source.
        stopped = shut_down(src_dom, opts["shutdown_timeout"], opts["force_shutdown"])
        if opts.get("copy_storage") == "all" and disks:
            dst_pool = dst_conn.storagePoolLookupByName(opts["target_pool"])
            total = 0
            for disk in disks:
                total += _volume_physical(src_conn.storageVolLookupByPath(disk["path"]))
            for disk in disks:
                new_path, size = copy_volume(src_conn, dst_conn, disk["path"], dst_pool, progress, copied, total)
                created_paths.append(new_path)
                new_paths[disk["path"]] = new_path
                copied += size
        dst_dom = dst_conn.defineXML(retarget_disks(domain_xml, new_paths))
        validated = None
        if opts.get("start", True):
            if progress is not None:
                progress.update("start", copied, copied)
            success, failures = compile_patterns(opts.get("success_pattern") or DEFAULT_SUCCESS_PATTERN,
                                                 opts.get("failure_patterns") or DEFAULT_FAILURE_PATTERNS)
            validated = start_and_judge(dst_conn, dst_dom, opts.get("validate_seconds", 10), success, failures,
                                        require_success=bool(opts.get("require_success_pattern")))
            if not validated["booted"]:
                raise MigrationFailed("VM %s did not boot on the target after the cold migration: %s"
                                      % (name, validated["reason"]))
    except BaseException as exc:
        cleanup = _rollback_cold(dst_dom, dst_conn, created_paths, src_dom, was_running)
        if isinstance(exc, (MigrationFailed, MigrationRefused)):
            raise type(exc)("%s; %s" % (exc, cleanup)) from exc
        raise MigrationFailed("cold migration of %s failed: %s; %s" % (name, exc, cleanup)) from exc
    # Only a guest proven on the target lets go of the source.
    src_dom.undefineFlags(undefine_flags())
    removed = []
    if opts.get("remove_source_storage") and new_paths:
        removed = remove_new_volumes(src_conn, list(new_paths))
    return {"stopped": stopped, "was_running": was_running, "disks": new_paths, "bytes_copied": copied,
            "validated": validated, "source_storage_removed": removed}


def _rollback_cold(dst_dom, dst_conn, created_paths, src_dom, was_running):
    notes = []
    if dst_dom is not None:
        try:
            if dst_dom.isActive():
                dst_dom.destroy()
            dst_dom.undefineFlags(undefine_flags())
            notes.append("the target's domain was removed")
        except libvirt.libvirtError as exc:
            notes.append("could not remove the target's domain: %s" % exc)
    removed = remove_new_volumes(dst_conn, created_paths)
    if removed:
        notes.append("copied disks removed from the target")
    if was_running:
        try:
            if not src_dom.isActive():
                src_dom.create()
            notes.append("the guest runs on the source node again")
        except libvirt.libvirtError as exc:
            notes.append("could not restart the guest on the source node: %s" % exc)
    else:
        notes.append("the source was not touched")
    return "rolled back: " + ", ".join(notes)
