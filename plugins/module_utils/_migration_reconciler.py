# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one kvm_migrate run does with a VM and two KVM nodes, decided from what the nodes hold now.

The shape of community.docker's docker_volume manager:

- read the current state: the cluster's two nodes (refused when unknown, or one daemon under two names),
  one migration of the VM at a time (a lock; a live job an earlier, killed run left is waited for, never
  aborted), where the VM is defined and whether it runs;
- the differences: a VM already on the target and gone from the source is left alone (``changed`` false);
  anything unsafe is refused before it is touched (missing VM, a namesake on the target, a live migration of
  a stopped VM, not enough memory or pool space on the target);
- act only outside check mode: the live (``_kvm_migration``) or cold (``_cold_migration``) migration, its
  progress and SIGTERM handling in one ``ProgressJob`` (stop once: the abort or rollback the first SIGTERM
  starts runs to its end; a final ``done`` or ``failed`` sample always);
- the result: ``changed`` and what the migration reports.
"""

from __future__ import annotations

import time

from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock as target_lock
from ansible_collections.v2kvm.migrate.plugins.module_utils._cold_migration import cold_migrate
from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_migration import (
    MigrationFailed,
    MigrationRefused,
    OrphanedJobWatch,
    check_capacity,
    check_distinct_hosts,
    completed_stats,
    live_migrate,
    remove_new_volumes,
    resolve_nodes,
    storage_needed,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import (
    domain_disks,
    lookup_domain,
    lookup_volume_by_path,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    LibvirtConnectionError,
    libvirt,
    open_connection,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import Interrupted, ProgressJob
from ansible_collections.v2kvm.migrate.plugins.module_utils._serial_verdict import PatternError, compile_patterns

LIVE_OPTIONS = ("copy_storage", "migrate_uri", "bandwidth_mib", "max_downtime_ms", "auto_converge", "post_copy",
                "post_copy_after", "timeout")
COLD_OPTIONS = ("copy_storage", "target_pool", "shutdown_timeout", "force_shutdown", "start", "validate_seconds",
                "success_pattern", "failure_patterns", "require_success_pattern", "remove_source_storage")


class _Failed(Exception):
    """The run fails with this message (raised through the ProgressJob, so its last sample says failed)."""


def defined_on(conn, name):
    """True when ``conn``'s node has a domain ``name``; a node that cannot answer counts as not."""
    try:
        return lookup_domain(conn, name) is not None
    except libvirt.libvirtError:
        return False


class MigrationReconciler:
    """MigrationReconciler(module).run() -> the module's result; refusals and failures end in fail_json.

    ``module`` is duck-typed: params, check_mode, warn, fail_json (which must not return).
    """

    def __init__(self, module, connect=open_connection):
        self.module = module
        self.p = module.params
        self.result = dict(changed=False, mode=self.p["mode"], source=self.p["source"], target=self.p["target"])
        self._connect = connect
        self.src_node = self.dst_node = self.src_conn = self.dst_conn = None
        self._lock = None

    def run(self):
        if not HAS_LIBVIRT:
            from ansible.module_utils.basic import missing_required_lib

            self.module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
        p = self.p
        try:
            self.src_node, self.dst_node = resolve_nodes(p["nodes"], p["source"], p["target"])
            compile_patterns(p["success_pattern"], p["failure_patterns"] or [])
        except (MigrationRefused, PatternError) as exc:
            self._fail(str(exc))
        self.src_conn = self._open(self.src_node)
        self.dst_conn = self._open(self.dst_node)
        try:
            if not self.module.check_mode:
                self._own_vm()
            try:
                self._reconcile()
            except _Failed as exc:
                self._fail(str(exc))
        finally:
            # The module exits right after; released here too so that a caller in the same process can
            # own the VM next (the lock is also released at exit).
            if self._lock is not None:
                self._lock.release()
        return self.result

    # -- the steps ----------------------------------------------------------------------------------

    def _reconcile(self):
        p = self.p
        with ProgressJob(p["progress_file"] if not self.module.check_mode else None, stop_once=True) as job:
            try:
                dom = self._differences(self._current_state())
                if dom is None:
                    self.result["msg"] = "%s is already on node %s" % (p["name"], p["target"])
                    return
                if self.module.check_mode:
                    self.result.update(changed=True, msg="would %s-migrate %s from %s to %s" % (
                        p["mode"], p["name"], p["source"], p["target"]))
                    return
                if p["mode"] == "live":
                    self._live(dom, job)
                else:
                    self._cold(dom, job)
                total = int(self.result.get("stats", {}).get("data_total") or self.result.get("bytes_copied") or 0)
                job.finish(True, total, total)
            except (MigrationRefused, MigrationFailed) as exc:
                raise _Failed(str(exc)) from exc
            except libvirt.libvirtError as exc:
                raise _Failed("libvirt failed while migrating %s: %s" % (p["name"], exc)) from exc
            except Interrupted as exc:
                # Said while SIGTERM is still ignored (stop once), so a second one cannot cut the answer short.
                where = [node["name"] for node, conn in ((self.src_node, self.src_conn), (self.dst_node, self.dst_conn))
                         if defined_on(conn, p["name"])]
                raise _Failed("migration of %s stopped (%s); the VM is defined on %s" % (
                    p["name"], exc, " and ".join(where) or "neither node")) from exc

    def _current_state(self):
        """Where the VM is defined now: {"source": its domain on the source or None, "on_target": bool}."""
        check_distinct_hosts(self.src_conn, self.dst_conn, self.p["source"], self.p["target"])
        return {"source": lookup_domain(self.src_conn, self.p["name"]),
                "on_target": lookup_domain(self.dst_conn, self.p["name"]) is not None}

    def _differences(self, state):
        """The source domain to migrate, or None when the VM is already on the target; every refusal, before
        anything moves."""
        p = self.p
        dom = state["source"]
        if dom is None:
            if state["on_target"]:
                return None
            raise MigrationRefused("VM %s not found on node %s" % (p["name"], p["source"]))
        if state["on_target"]:
            raise MigrationRefused("a domain named %s already exists on node %s: remove or rename it first"
                                   % (p["name"], p["target"]))
        if p["mode"] == "live" and not dom.isActive():
            raise MigrationRefused("VM must be running for live migration (%s is %s on node %s; use mode=cold)"
                                   % (p["name"], "shut off", p["source"]))
        copying = p["copy_storage"] == "all"
        disks = domain_disks(dom.XMLDesc(0))
        disk_bytes = storage_needed(self.src_conn, disks) if copying else 0
        memory_mib = dom.maxMemory() // 1024
        check_capacity(self.dst_conn, p["target"], memory_mib, disk_bytes,
                       p["target_pool"] if copying and disks else None)
        self.result.update(memory_mib=memory_mib, disk_bytes=disk_bytes)
        return dom

    def _live(self, dom, job):
        p = self.p
        disks = domain_disks(dom.XMLDesc(0))
        # What the target pre-creates for copy-storage is not libvirt's to clean up after a failure.
        preexisting = {d["path"] for d in disks if lookup_volume_by_path(self.dst_conn, d["path"]) is not None}
        try:
            outcome = live_migrate(dom, self.dst_node["uri"], {k: p[k] for k in LIVE_OPTIONS}, job)
        except MigrationFailed as exc:
            leftovers = [d["path"] for d in disks if d["path"] not in preexisting] if p["copy_storage"] == "all" else []
            removed = remove_new_volumes(self.dst_conn, leftovers) if not defined_on(self.dst_conn, p["name"]) else []
            note = "; removed the disks the target had pre-created" if removed else ""
            raise _Failed("%s%s" % (exc, note)) from exc
        stats = completed_stats(self.dst_conn.lookupByName(p["name"]))
        if outcome.get("abort_missed"):
            self.result["abort_missed"] = outcome["abort_missed"]
            self.module.warn("%s: %s; the guest now runs on %s" % (p["name"], outcome["abort_missed"], p["target"]))
        self.result.update(changed=True, downtime_ms=stats.get("downtime"), stats=stats,
                           escalated=outcome["escalated"], elapsed_s=outcome["elapsed"],
                           msg="%s live-migrated from %s to %s in %.1f s (downtime %s ms)" % (
                               p["name"], p["source"], p["target"], outcome["elapsed"], stats.get("downtime")))

    def _cold(self, dom, job):
        p = self.p
        started = time.monotonic()
        summary = cold_migrate(self.src_conn, self.dst_conn, dom, {k: p[k] for k in COLD_OPTIONS}, job)
        elapsed = round(time.monotonic() - started, 3)
        self.result.update(changed=True, elapsed_s=elapsed, disks=summary["disks"],
                           bytes_copied=summary["bytes_copied"], stopped=summary["stopped"],
                           validated=summary["validated"], source_storage_removed=summary["source_storage_removed"],
                           msg="%s cold-migrated from %s to %s in %.1f s (%s; %d bytes copied)" % (
                               p["name"], p["source"], p["target"], elapsed, summary["stopped"],
                               summary["bytes_copied"]))

    def _own_vm(self):
        """One migration of a VM at a time from this host. A cold migration left running by a killed run of the
        same job is stopped (it rolls back, as on Ctrl-C); a live one is never stopped, since its module aborts
        the job when stopped: this run waits for it (see OrphanedJobWatch), and so it does for a live job whose
        module is gone."""
        p = self.p
        job = OrphanedJobWatch(self.src_conn, p["name"], p["source"], self.src_node["uri"], p)

        def on_wait(holder, waited):
            refusal = job.check(waited)
            if refusal:
                self._fail(refusal)

        self._lock = target_lock.own(self.module, target_lock.state_lock_path("kvm_migrate", p["name"]),
                                     "%s migration of %s" % (p["mode"], p["name"]), ProgressWriter,
                                     on_wait=on_wait,
                                     may_stop=lambda holder: not str(holder.get("what") or "").startswith("live"))
        if job.stats() is None:
            return
        report = target_lock.WaitReport(p["progress_file"], ProgressWriter)
        try:
            refusal = job.wait(progress=report.writer())
        finally:
            report.close()
        if refusal:
            self._fail(refusal)
        if job.seen:
            self.module.warn("waited for a live migration of %s that an earlier, stopped run had started" % p["name"])

    # -- helpers ------------------------------------------------------------------------------------

    def _open(self, node):
        try:
            return self._connect(node["uri"])
        except LibvirtConnectionError as exc:
            self._fail("node %s: %s" % (node["name"], exc))

    def _fail(self, msg):
        self.module.fail_json(msg=msg, **self.result)
