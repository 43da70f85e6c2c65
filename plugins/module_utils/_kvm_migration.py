# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move a libvirt domain from one KVM node to another, live or cold, with its safety checks.

Live: one ``migrateToURI3`` (peer-to-peer, persistent destination, source undefined on success,
optional copy of every disk over NBD) runs in a worker thread while this thread reads job stats
into the progress file, sets the maximum downtime once the job exists, switches to post-copy when
the migration does not converge in time, and aborts it at the time limit. libvirt rolls a failed
or aborted pre-copy migration back on its own: the guest keeps running on the source.

Cold: shut down (force only when allowed), stream each disk volume from the source pool to the
target pool through libvirt (sparse, so holes stay holes), define on the target, start it and judge
its boot from the serial console read through libvirt, and only then undefine the source. Any
failure removes what the target got and starts the source again if it was running.

Plain Python over libvirt-python, free of Ansible imports.
"""

from __future__ import annotations

import threading
import time
from xml.etree import ElementTree

from ansible_collections.v2kvm.migrate.plugins.module_utils._console_watch import start_and_judge
from ansible_collections.v2kvm.migrate.plugins.module_utils._serial_verdict import (
    DEFAULT_FAILURE_PATTERNS, DEFAULT_SUCCESS_PATTERN, compile_patterns)
from ansible_collections.v2kvm.migrate.plugins.module_utils._stop_signal import Interrupted

try:
    import libvirt
except ImportError:  # the module reports missing_required_lib before calling anything here
    libvirt = None

MIB = 1024 * 1024
UNDEFINE_FLAGS_NAMES = ("VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE",
                        "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA")


class MigrationRefused(Exception):
    """A safety check failed before anything was touched."""


class MigrationFailed(Exception):
    """The migration started and failed; the message says where the guest is now."""


def _xml(text):
    # libvirt's own XML from the daemon we talk to.
    return ElementTree.fromstring(text)  # noqa: S314


def _undefine_flags():
    flags = 0
    for name in UNDEFINE_FLAGS_NAMES:
        flags |= getattr(libvirt, name, 0)
    return flags


# -- safety checks --------------------------------------------------------------------------------

def resolve_nodes(nodes, source, target):
    """(source node, target node) dicts from the cluster list, or MigrationRefused."""
    by_name = {}
    for node in nodes:
        if not node.get("name") or not node.get("uri"):
            raise MigrationRefused("every node needs a name and a uri; got %r" % (node,))
        by_name[node["name"]] = node
    for name in (source, target):
        if name not in by_name:
            raise MigrationRefused("Node %s not found in cluster (known nodes: %s)"
                                   % (name, ", ".join(sorted(by_name)) or "none"))
    if source == target or by_name[source]["uri"] == by_name[target]["uri"]:
        raise MigrationRefused("Target node must be different from source node (both are %s)" % source)
    return by_name[source], by_name[target]


def check_distinct_hosts(src_conn, dst_conn, source, target):
    """Two node names can point at one daemon; the host UUID tells them apart."""
    src_uuid = _xml(src_conn.getCapabilities()).findtext("host/uuid")
    dst_uuid = _xml(dst_conn.getCapabilities()).findtext("host/uuid")
    if src_uuid and src_uuid == dst_uuid:
        raise MigrationRefused("Target node must be different from source node (%s and %s are the same host, "
                               "UUID %s)" % (source, target, src_uuid))


def disk_sources(domain_xml):
    """[{"target", "path", "format"}] of the domain's file-backed disks."""
    disks = []
    for disk in _xml(domain_xml).findall("devices/disk"):
        if disk.get("device", "disk") != "disk" or disk.get("type") != "file":
            continue
        source = disk.find("source")
        if source is None or not source.get("file"):
            continue
        driver = disk.find("driver")
        disks.append({"target": disk.find("target").get("dev"), "path": source.get("file"),
                      "format": None if driver is None else driver.get("type")})
    return disks


def _volume_physical(vol):
    root = _xml(vol.XMLDesc(0))
    for tag in ("physical", "capacity"):
        text = root.findtext(tag)
        if text:
            return int(text)
    return int(vol.info()[1])


def storage_needed(src_conn, disks):
    """Bytes the copied disks take (their files' allocation) on the source."""
    total = 0
    for disk in disks:
        try:
            total += int(src_conn.storageVolLookupByPath(disk["path"]).info()[2])
        except libvirt.libvirtError:
            continue
    return total


def check_capacity(dst_conn, target, memory_mib, disk_bytes, pool_name):
    free_mib = dst_conn.getFreeMemory() // MIB
    if memory_mib > free_mib:
        raise MigrationRefused("Not enough capacity on node %s: the VM needs %d MiB of memory, %d MiB are free"
                               % (target, memory_mib, free_mib))
    if disk_bytes and pool_name:
        try:
            pool = dst_conn.storagePoolLookupByName(pool_name)
        except libvirt.libvirtError as exc:
            raise MigrationRefused("storage pool %s does not exist on node %s: create it (v2kvm.migrate.storage_pool) "
                                   "or set target_pool" % (pool_name, target)) from exc
        if pool.isActive():
            pool.refresh(0)
        available = pool.info()[3]
        if disk_bytes > available:
            raise MigrationRefused("Not enough capacity on node %s: the disks need %d MiB in pool %s, %d MiB are free"
                                   % (target, disk_bytes // MIB, pool_name, available // MIB))


def lookup_domain(conn, name, node):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise MigrationRefused("VM %s not found on node %s" % (name, node)) from exc
        raise


def exists(conn, name):
    try:
        conn.lookupByName(name)
        return True
    except libvirt.libvirtError:
        return False


def pool_for_path(conn, path):
    """The storage pool whose directory holds ``path`` on ``conn``'s host, or None."""
    directory = path.rsplit("/", 1)[0]
    for pool in conn.listAllStoragePools(0):
        if _xml(pool.XMLDesc(0)).findtext("target/path") == directory:
            return pool
    return None


# -- live -----------------------------------------------------------------------------------------

def live_flags(opts):
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
             | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    if opts.get("copy_storage") == "all":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    if opts.get("auto_converge"):
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if opts.get("post_copy"):
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    return flags


def live_params(opts):
    params = {}
    if opts.get("migrate_uri"):
        params[libvirt.VIR_MIGRATE_PARAM_URI] = opts["migrate_uri"]
    if opts.get("bandwidth_mib"):
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(opts["bandwidth_mib"])
    return params


def live_migrate(src_dom, target_uri, opts, progress=None, poll=0.5, clock=time.monotonic):
    """Run the live migration; return {"escalated": [...], "elapsed": s} plus "abort_missed" (why) when
    the time limit or a stop came but the job completed anyway.

    ``opts``: copy_storage (all|none), migrate_uri, bandwidth_mib, max_downtime_ms, auto_converge,
    post_copy, post_copy_after (s), timeout (s). ``progress`` has update(stage, done, total).
    """
    outcome = {}

    def worker():
        try:
            src_dom.migrateToURI3(target_uri, live_params(opts), live_flags(opts))
        except BaseException as exc:  # handed to the monitoring thread, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name="migrateToURI3", daemon=True)
    started = clock()
    thread.start()
    escalated = []
    downtime_set = not opts.get("max_downtime_ms")
    aborted = None
    refusal = None
    stage = "live-migrate"
    while thread.is_alive():
        try:
            thread.join(poll)
            if not thread.is_alive():
                break
            elapsed = clock() - started
            try:
                stats = src_dom.jobStats(0)
            except libvirt.libvirtError:
                stats = {}
            active = stats.get("type", 0) not in (0, getattr(libvirt, "VIR_DOMAIN_JOB_NONE", 0))
            if active and not downtime_set:
                try:
                    src_dom.migrateSetMaxDowntime(int(opts["max_downtime_ms"]), 0)
                    downtime_set = True
                except libvirt.libvirtError:
                    pass  # the job may not have reached the migration phase yet: retried next poll
            if active and progress is not None:
                progress.update(stage, int(stats.get("data_processed", 0)), int(stats.get("data_total", 0)))
            if (opts.get("post_copy") and "post-copy" not in escalated and active and aborted is None
                    and elapsed >= float(opts.get("post_copy_after") or 0)
                    and int(stats.get("memory_iteration", 0)) >= 2):
                # Pre-copy did not converge in time: the guest moves now and pulls its missing pages on demand.
                try:
                    src_dom.migrateStartPostCopy(0)
                    escalated.append("post-copy")
                    stage = "post-copy"
                except libvirt.libvirtError:
                    pass
            timeout = opts.get("timeout")
            if aborted is None and timeout and elapsed >= timeout and "post-copy" not in escalated:
                aborted = "timeout of %d s reached" % timeout
        except Interrupted as exc:
            # The module's SIGTERM handler (the run was stopped, or the orphan watchdog fired) raised here:
            # the migration is aborted below like a timed-out one, so the guest stays on its source. In
            # post-copy there is nothing to abort (the guest already runs on the target); it finishes.
            if aborted is not None or "post-copy" in escalated:
                continue
            aborted = "stopped: %s" % exc
        if aborted is not None and "post-copy" not in escalated:
            # Asked at every poll until the job ends: an abort accepted while the job is still being set
            # up (or copying storage before memory) can be a no-op in QEMU, and the job would then finish.
            try:
                src_dom.abortJob()
                refusal = "libvirt accepted the abort, but the job went on"
            except libvirt.libvirtError as exc:
                refusal = "libvirt refused the abort: %s" % exc  # asked again at the next poll
    error = outcome.get("error")
    elapsed = clock() - started
    if error is not None:
        reason = aborted or str(error)
        if "post-copy" in escalated:
            raise MigrationFailed("live migration of %s failed during post-copy (%s): the guest's memory is split "
                                  "between the nodes; check both nodes before doing anything else"
                                  % (src_dom.name(), reason))
        where = "the guest keeps running on the source node" if _still_active(src_dom) else \
            "the guest is no longer running on the source node"
        kind = "aborted" if (aborted or "abort" in str(error).lower() or "cancel" in str(error).lower()) else "failed"
        raise MigrationFailed("live migration of %s %s after %.1f s (%s); %s"
                              % (src_dom.name(), kind, elapsed, reason, where))
    result = {"escalated": (["auto-converge"] if opts.get("auto_converge") else []) + escalated,
              "elapsed": round(elapsed, 3)}
    if aborted is not None and "post-copy" not in escalated:
        # The time limit (or a stop) came, yet the migration completed: the guest runs on the target.
        result["abort_missed"] = "%s, but the migration completed (%s)" % (aborted, refusal or "no abort was sent")
    return result


def _still_active(dom):
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False


def completed_stats(dst_dom):
    """Job stats of the finished migration as the destination recorded them (downtime included)."""
    try:
        return dict(dst_dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    except libvirt.libvirtError:
        return {}


def remove_new_volumes(conn, paths):
    """Delete volumes at ``paths`` on ``conn`` (what a failed copy left); return the removed paths."""
    removed = []
    for path in paths:
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            continue
        try:
            vol.delete(0)
            removed.append(path)
        except libvirt.libvirtError:
            continue
    return removed


class OrphanedJobWatch:
    """A live migration job of ``name`` on the source that this run did not start: a killed run's module may
    still drive it, or its module is gone and the job lives on in libvirtd.

    It is never aborted here. An abort is only harmless in pre-copy, the job may switch to post-copy at any
    moment (or already has: the guest then runs on the target and pulls its memory from the source), and
    re-migrating after aborting a post-copy job panicked the guest. So the run waits for it; when
    ``post_copy`` is allowed and pre-copy has not converged after ``post_copy_after`` seconds it asks for the
    switch (libvirt refuses it unless the job was started with post-copy allowed); after ``timeout`` seconds
    it refuses, naming ``virsh domjobabort`` for an operator who knows the job is still in pre-copy.
    """

    def __init__(self, conn, name, node, uri, opts, clock=time.monotonic):
        self.conn, self.name, self.node, self.uri, self.opts = conn, name, node, uri, opts
        self.asked_post_copy = False
        self.seen = False
        self._clock = clock

    def stats(self):
        """The job stats of an active job of the domain on the source, or None."""
        try:
            stats = self.conn.lookupByName(self.name).jobStats(0)
        except libvirt.libvirtError:
            return None
        if stats.get("type", 0) in (0, getattr(libvirt, "VIR_DOMAIN_JOB_NONE", 0)):
            return None
        operation = stats.get("operation")
        if operation is not None and operation != getattr(libvirt, "VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT", operation):
            return None
        self.seen = True
        return stats

    def check(self, waited):
        """None while waiting is right (or no job runs); the refusal message once ``timeout`` has passed."""
        stats = self.stats()
        if stats is None:
            return None
        if (self.opts.get("post_copy") and not self.asked_post_copy
                and waited >= float(self.opts.get("post_copy_after") or 0)
                and int(stats.get("memory_iteration", 0)) >= 2):
            try:
                self.conn.lookupByName(self.name).migrateStartPostCopy(0)
            except libvirt.libvirtError:
                pass  # not started with post-copy allowed, or already in post-copy
            self.asked_post_copy = True
        timeout = self.opts.get("timeout")
        if timeout and waited >= timeout:
            return ("a live migration of %s that an earlier, stopped run started is still running on node %s after "
                    "%d s of waiting (%d of %d bytes sent); it was not aborted, because aborting a migration this run "
                    "does not drive can lose the guest once it is in post-copy. Wait for it to finish and run again; "
                    "only if it is still in pre-copy, abort it with 'virsh -c %s domjobabort %s' and run again"
                    % (self.name, self.node, waited, int(stats.get("data_processed", 0)),
                       int(stats.get("data_total", 0)), self.uri, self.name))
        return None

    def wait(self, progress=None, poll=0.5):
        """Wait for the job to end; returns the refusal message when ``timeout`` passes first, else None."""
        started = self._clock()
        while True:
            stats = self.stats()
            if stats is None:
                return None
            if progress is not None:
                progress.update("waiting for an earlier run's live migration", int(stats.get("data_processed", 0)),
                                int(stats.get("data_total", 0)))
            refusal = self.check(self._clock() - started)
            if refusal:
                return refusal
            time.sleep(poll)


# -- cold -----------------------------------------------------------------------------------------

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
    src_root = _xml(src_vol.XMLDesc(0))
    name = src_vol.name()
    fmt_elem = src_root.find("target/format")
    fmt = fmt_elem.get("type") if fmt_elem is not None else "raw"
    try:
        dst_pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        pass
    else:
        raise MigrationRefused("volume %s already exists in pool %s on the target: remove it or pick another "
                               "target_pool" % (name, dst_pool.name()))
    capacity = int(src_root.findtext("capacity"))
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
    root = _xml(domain_xml)
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
    disks = disk_sources(domain_xml)
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
    src_dom.undefineFlags(_undefine_flags())
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
            dst_dom.undefineFlags(_undefine_flags())
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
