# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find what a target host already holds of a source's migration, from the v2kvm metadata in its
libvirt domains (docs/architecture.md: the migration state lives on the target)."""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml

# libvirt's VIR_DOMAIN_XML_INACTIVE, so this file needs no libvirt import of its own.
VIR_DOMAIN_XML_INACTIVE = 2


def source_changes(recorded, source_path):
    """How the source file differs from the one the migration was made from ([] when it does not)."""
    try:
        stat = os.stat(source_path)
    except OSError as exc:
        return ["the source cannot be read here: %s" % exc.strerror]
    changes = []
    if recorded.get("size") is None or recorded.get("mtime_ns") is None:
        changes.append("no fingerprint of the source was recorded")
    else:
        if recorded["size"] != stat.st_size:
            changes.append("size %s -> %s" % (recorded["size"], stat.st_size))
        if recorded["mtime_ns"] != stat.st_mtime_ns:
            changes.append("modified since the migration")
    return changes


FILE_SOURCES = ("ova", "ovf", "vmdk")


def migrations_of(conn, source_path=None, name=None):
    """Every domain with v2kvm metadata naming this source file, or (with ``name``) that domain."""
    wanted = os.path.realpath(source_path) if source_path else None
    found = []
    for dom in conn.listAllDomains(0):
        if name and dom.name() != name:
            continue
        # The persistent definition is the record (the live XML keeps what the guest was started with).
        meta = meta_xml.from_domain_xml(dom.XMLDesc(VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0))
        if meta is None:
            continue
        source = meta.get("source") or {}
        if wanted is None or (source.get("path") and os.path.realpath(source["path"]) == wanted):
            found.append((dom, meta))
    return found


def describe(conn, source_path=None, name=None):
    """The module's result: is there a finished migration of this source, and if not, why not.

    A file source (OVA, OVF, VMDK) must also be unchanged since; for other sources (vSphere) the
    domain is found by name and its validation is what counts."""
    found = migrations_of(conn, source_path, name)
    result = {"found": bool(found), "complete": False, "name": None, "phase": None, "running": None,
              "validated_at": None, "source_changes": [], "reason": None}
    if not found:
        result["reason"] = "no domain on this host was migrated from %s" % (source_path or name)
        return result
    if len(found) > 1:
        names = ", ".join(sorted(pair[0].name() for pair in found))
        result["reason"] = "several domains were migrated from this source (%s): set the VM name" % names
        return result
    dom, meta = found[0]
    recorded = meta.get("source") or {}
    changes = source_changes(recorded, source_path) if source_path and recorded.get("type") in FILE_SOURCES else []
    result.update(name=dom.name(), phase=meta.get("phase"), running=bool(dom.isActive()),
                  validated_at=meta.get("validated_at"), source_changes=changes)
    if meta.get("phase") != "validated":
        result["reason"] = "the migration reached phase %r, not 'validated'" % meta.get("phase")
    elif changes:
        result["reason"] = "the source changed since it was migrated: %s" % "; ".join(changes)
    else:
        result["complete"] = True
        result["reason"] = "migrated and validated %s" % meta.get("validated_at")
    return result
