# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt domain of a migrated VM, reconciled: what the domain module does.

``DomainReconciler(module).run()`` reads the domain as libvirt has it (definition, v2kvm metadata,
autostart), computes what the VM spec and options want, acts only outside check mode and returns
the module's result (``changed``, and ``diff`` when the module runs in diff mode).

- present: render the spec into domain XML (``_domain_xml``), record the migration state in the
  metadata (``_domain_metadata``), re-define only when the rendering, a managed live setting or the
  metadata content differs;
- absent: undefine (destroying a running domain), optionally delete the volumes v2kvm created for it;
  ``only_unfinished`` keeps a domain that is not an unfinished migration of the same source.
"""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_xml as dxml
from ansible_collections.v2kvm.migrate.plugins.module_utils._convert_state import sidecar_path
from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_detect import detect_domain_type
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import (
    lookup_domain,
    pool_for_path,
    volume_format,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    connect_for_module,
    is_local_uri,
    libvirt,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import same_source
from ansible_collections.v2kvm.migrate.plugins.module_utils._qemu_img import QemuImgError, info as qemu_img_info

# Removing a domain takes what libvirt keeps beside its definition too (those this libvirt knows).
UNDEFINE_FLAG_NAMES = ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                       "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA")


def undefine_flags():
    flags = 0
    for flag in UNDEFINE_FLAG_NAMES:
        flags |= getattr(libvirt, flag, 0)
    return flags


def _disk_format(module, pool, path, exists):
    """The disk's format: the option, else libvirt's volume, else qemu-img, else (check mode) a guess."""
    fmt = module.params["disk_format"]
    if fmt is None and pool is not None:
        try:
            fmt = volume_format(pool.storageVolLookupByName(os.path.basename(path)))
        except libvirt.libvirtError:
            fmt = None
    if fmt is None and exists:
        try:
            fmt = qemu_img_info(path)["format"]
        except QemuImgError as exc:
            module.fail_json(msg="cannot tell the format of disk %s: %s; set disk_format" % (path, exc))
    if fmt is None:
        fmt = "raw" if path.endswith((".raw", ".img")) else "qcow2"
        module.warn("disk %s does not exist yet; assuming format %s in check mode" % (path, fmt))
    return fmt


def resolve_disks(module, conn):
    """Each O(disks) path as {path, format, pool, volume, owned}."""
    resolved = []
    for raw_path in module.params["disks"]:
        path = os.path.abspath(raw_path)
        exists = os.path.exists(path)
        if not exists and not module.check_mode:
            module.fail_json(msg="disk %s does not exist: convert the source disk first "
                                 "(v2kvm.migrate.disk_convert) or fix the disks list" % path)
        pool = pool_for_path(conn, path)
        if pool is not None and not module.check_mode:
            # The convert phase wrote the file behind libvirt's back.
            pool.refresh(0)
        resolved.append({
            "path": path, "format": _disk_format(module, pool, path, exists),
            "pool": pool.name() if pool is not None else None,
            "volume": os.path.basename(path) if pool is not None else None,
            "owned": os.path.exists(sidecar_path(path)),
        })
    return resolved


def resolve_domain_type(module, conn):
    """(domain type, how auto decided or None)."""
    wanted = module.params["domain_type"]
    if wanted != "auto":
        return wanted, None
    detection = detect_domain_type(conn, local=is_local_uri(module.params["uri"]), probe=not module.check_mode)
    return detection["domain_type"], detection


def desired_metadata(params, spec, plan, disks, previous, config_changed):
    """The metadata the domain should carry (without timestamps)."""
    extra = dict(params["metadata"] or {})
    # A new definition has not been validated yet; an unchanged one keeps the phase it reached.
    kept = None if config_changed else (previous or {}).get("phase")
    phase = extra.pop("phase", None) or kept or "defined"
    return meta_xml.new_metadata(
        phase=str(phase),
        spec_digest=meta_xml.digest_of(spec),
        config_digest=dxml.config_digest(plan),
        source=meta_xml.source_fingerprint(spec.get("source")),
        volumes=[{"path": d["path"], "pool": d["pool"], "name": d["volume"], "owned": d["owned"]} for d in disks],
        extra=extra,
    )


def unfinished_refusal(metadata, spec):
    """Why only_unfinished must keep the domain, or None when it is an unfinished migration of this source."""
    if metadata is None:
        return "it carries no v2kvm migration metadata (not made by this collection): only_unfinished keeps it"
    if not same_source(metadata.get("source"), (spec or {}).get("source")):
        return ("its metadata records a migration of another source (%s %s): only_unfinished keeps it"
                % ((metadata.get("source") or {}).get("type"), (metadata.get("source") or {}).get("path")))
    if metadata.get("phase") == "validated":
        return ("a finished migration (validated at %s): only_unfinished keeps it"
                % (metadata.get("validated_at") or "an unknown time"))
    return None


def owned_volume_paths(metadata):
    return [v["path"] for v in (metadata or {}).get("volumes") or [] if v.get("owned")]


def _delete_volume(module, conn, vol):
    """Delete one owned volume (through its pool when it has one); False when there was nothing to delete."""
    path = vol["path"]
    try:
        if vol.get("pool"):
            pool = conn.storagePoolLookupByName(vol["pool"])
            pool.refresh(0)
            pool.storageVolLookupByName(vol["name"]).delete(0)
        elif os.path.exists(path):
            os.unlink(path)
        else:
            return False
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            module.fail_json(msg="could not delete volume %s: %s" % (path, exc))
        if not os.path.exists(path):
            return False
        os.unlink(path)
    return True


def delete_owned_volumes(module, conn, metadata):
    """Delete the volumes the metadata records as v2kvm's, with their sidecars; the paths deleted."""
    removed = []
    for vol in (metadata or {}).get("volumes") or []:
        if not vol.get("owned") or not _delete_volume(module, conn, vol):
            continue
        path = vol["path"]
        if os.path.exists(sidecar_path(path)):
            os.unlink(sidecar_path(path))
        removed.append(path)
    return removed


def _state_lines(phase, autostart):
    return "phase: %s\nautostart: %s\n" % (phase, autostart)


class DomainReconciler:
    """One domain, reconciled with the module's options (see the module documentation)."""

    def __init__(self, module, conn=None):
        self.module = module
        self.params = module.params
        self.conn = conn
        self.name = self.params["name"] or (self.params["spec"] or {}).get("name")

    def run(self):
        if not self.name:
            self.module.fail_json(msg="the spec has no name: set the name option")
        if self.conn is None:
            self.conn = connect_for_module(self.module, self.params["uri"])
        try:
            if self.params["state"] == "absent":
                return self.absent()
            return self.present()
        except libvirt.libvirtError as exc:
            self.module.fail_json(msg="libvirt error while managing domain %s: %s" % (self.name, exc))
        return None  # not reached: fail_json exits

    # state=present

    def _plan(self, domain_type, disks):
        params = self.params
        cpu_mode = params["cpu_mode"]
        try:
            return dxml.plan_from_spec(
                params["spec"], name=self.name, disks=disks,
                network_map=params["network_map"], default_network=params["default_network"],
                keep_macs=params["keep_macs"], disk_bus=params["disk_bus"],
                nic_model=params["nic_model"], domain_type=domain_type, machine=params["machine"],
                cpu_mode=None if cpu_mode == "auto" else cpu_mode, firmware=params["firmware"],
                serial_log=params["serial_log"])
        except dxml.DomainSpecError as exc:
            self.module.fail_json(msg=str(exc))
        return None  # not reached: fail_json exits

    def _current(self, wanted_summary):
        """The domain as libvirt has it now (dom None when there is none)."""
        dom = lookup_domain(self.conn, self.name)
        current = {"dom": dom, "uuid": None, "metadata": None, "summary": None, "macs": [], "running": False,
                   "autostart": False}
        if dom is not None:
            live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            current.update(
                uuid=dom.UUIDString(), metadata=meta_xml.from_domain_xml(live_xml),
                summary=dxml.comparable(dxml.summarize(live_xml), wanted_summary),
                macs=dxml.interface_macs(live_xml), running=bool(dom.isActive()), autostart=bool(dom.autostart()))
        return current

    def _define(self, xml):
        try:
            return self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            self.module.fail_json(msg="libvirt refused the domain definition of %s: %s" % (self.name, exc), xml=xml)
        return None  # not reached: fail_json exits

    def present(self):
        domain_type, detection = resolve_domain_type(self.module, self.conn)
        disks = resolve_disks(self.module, self.conn)
        plan = self._plan(domain_type, disks)
        generated = dxml.build_domain_xml(plan)
        digest = meta_xml.digest_of(generated)
        wanted_summary = dxml.summarize(generated)
        current = self._current(wanted_summary)
        previous = current["metadata"]

        drift = current["summary"] is not None and current["summary"] != wanted_summary
        config_changed = (current["dom"] is None or previous is None
                          or previous.get("config_digest") != digest or drift)
        wanted_meta = desired_metadata(self.params, self.params["spec"], plan, disks, previous, config_changed)
        changed = config_changed or meta_xml.content_of(previous) != meta_xml.content_of(wanted_meta)
        final_meta = meta_xml.merge_timestamps(wanted_meta, previous) if changed else previous
        xml = dxml.build_domain_xml(plan, uuid=current["uuid"], metadata=final_meta, fallback_macs=current["macs"])

        dom, uuid = current["dom"], current["uuid"]
        if changed and not self.module.check_mode:
            dom = self._define(xml)
            uuid = dom.UUIDString()
        autostart = self.params["autostart"]
        if current["autostart"] != autostart:
            changed = True
            if not self.module.check_mode:
                dom.setAutostart(1 if autostart else 0)

        result = dict(
            changed=changed, created=current["dom"] is None and changed, name=self.name, uuid=uuid,
            domain_type=domain_type, domain_type_detection=detection,
            xml=xml, config_digest=digest, metadata=final_meta, drift=drift,
            restart_required=bool(current["running"] and config_changed),
        )
        if self.module._diff:
            result["diff"] = self._present_diff(current, wanted_summary, digest, wanted_meta["phase"])
        return result

    def _present_diff(self, current, wanted_summary, digest, wanted_phase):
        before = ""
        if current["summary"] is not None:
            previous = current["metadata"] or {}
            before = dxml.summary_text(current["summary"], previous.get("config_digest"))
            before += _state_lines(previous.get("phase"), current["autostart"])
        after = dxml.summary_text(wanted_summary, digest) + _state_lines(wanted_phase, self.params["autostart"])
        return {"before": before, "after": after,
                "before_header": "%s (defined)" % self.name, "after_header": "%s (wanted)" % self.name}

    # state=absent

    def absent(self):
        module, params = self.module, self.params
        dom = lookup_domain(self.conn, self.name)
        result = dict(changed=False, name=self.name, uuid=None, restart_required=False, removed_volumes=[],
                      kept=None, phase=None)
        if dom is None:
            return result
        live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        metadata = meta_xml.from_domain_xml(live_xml)
        result.update(uuid=dom.UUIDString(), phase=(metadata or {}).get("phase"))
        if params["only_unfinished"]:
            refusal = unfinished_refusal(metadata, params["spec"])
            if refusal:
                result["kept"] = refusal
                return result
        result["changed"] = True
        if params["remove_volumes"] and metadata is None:
            module.warn("domain %s carries no v2kvm metadata, so no volume is known to be v2kvm's: none deleted"
                        % self.name)
        if module._diff:
            result["diff"] = {"before": dxml.summary_text(dxml.summarize(live_xml)), "after": ""}
        if module.check_mode:
            if params["remove_volumes"]:
                result["removed_volumes"] = [p for p in owned_volume_paths(metadata) if os.path.exists(p)]
            return result
        self._undefine(dom)
        if params["remove_volumes"]:
            result["removed_volumes"] = delete_owned_volumes(module, self.conn, metadata)
        return result

    def _undefine(self, dom):
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(undefine_flags())
        except libvirt.libvirtError as exc:
            self.module.fail_json(msg="could not remove domain %s: %s" % (self.name, exc))
