# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find what a target host already holds of a source's migration, from the v2kvm metadata in its
libvirt domains (docs/architecture.md: the migration state lives on the target).

The host side (``records``, ``describe``, ``answer``) reads libvirt and stats source files; ``verdict``
turns records into the module's answer and needs neither, so the controller can answer many VMs from one
listing of a host (plugins/action/migration_state.py, which reads that listing with ``read_listing`` when
the controller is the host). ``run`` is the migration_state module's entry."""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import lookup_domain
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import connect_for_module, open_connection
from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import domain_name_for

# libvirt's VIR_DOMAIN_XML_INACTIVE, so this file needs no libvirt import of its own.
VIR_DOMAIN_XML_INACTIVE = 2
FILE_SOURCES = ("ova", "ovf", "vmdk")
# The module's options that ask about one source; without them it lists the host's migrations.
SOURCE_OPTIONS = ("source_path", "name")


def file_stat(path):
    """What ``verdict`` compares against the recorded fingerprint: size and mtime, or why not."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        return {"error": exc.strerror}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def records(conn, name=None):
    """One record per domain carrying v2kvm metadata (only ``name`` when given): its name, whether
    it runs, the metadata, the real path of a recorded source path and, for file sources, its current stat."""
    found = []
    if name:
        domains = [dom for dom in (lookup_domain(conn, name),) if dom is not None]
    else:
        domains = conn.listAllDomains(0)
    for dom in domains:
        # The persistent definition is the record (the live XML keeps what the guest was started with).
        meta = meta_xml.from_domain_xml(dom.XMLDesc(VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0))
        if meta is None:
            continue
        record = {"name": dom.name(), "running": bool(dom.isActive()), "metadata": meta}
        source = meta.get("source") or {}
        if source.get("path"):
            record["source_realpath"] = os.path.realpath(source["path"])
            if source.get("type") in FILE_SOURCES:
                record["source_stat"] = file_stat(source["path"])
        found.append(record)
    return found


def same_source(recorded, wanted):
    """Whether a domain's recorded source is the spec's (type and path; file paths compared by real path)."""
    recorded, wanted = recorded or {}, wanted or {}
    if not recorded.get("path") or recorded.get("type") != wanted.get("type"):
        return False
    if recorded["path"] == wanted.get("path"):
        return True
    return bool(wanted.get("path")) and os.path.realpath(recorded["path"]) == os.path.realpath(wanted["path"])


def source_changes(recorded, stat):
    """How the source file differs from the one the migration was made from ([] when it does not)."""
    if "error" in stat:
        return ["the source cannot be read here: %s" % stat["error"]]
    if recorded.get("size") is None or recorded.get("mtime_ns") is None:
        return ["no fingerprint of the source was recorded"]
    changes = []
    if recorded["size"] != stat["size"]:
        changes.append("size %s -> %s" % (recorded["size"], stat["size"]))
    if recorded["mtime_ns"] != stat["mtime_ns"]:
        changes.append("modified since the migration")
    return changes


def verdict(found, source_path=None, name=None):
    """The module's result from the records of the domains migrated from this source.

    A file source (OVA, OVF, VMDK) must also be unchanged since (``source_stat`` of the record, the
    stat of the same file as ``source_path``); for other sources (vSphere) the domain is found by
    name and its validation is what counts."""
    result = {"found": bool(found), "complete": False, "name": None, "phase": None, "running": None,
              "validated_at": None, "source_type": None, "source_changes": [], "reason": None}
    if not found:
        result["reason"] = "no domain on this host was migrated from %s" % (source_path or name)
        return result
    if len(found) > 1:
        names = ", ".join(sorted(record["name"] for record in found))
        result["reason"] = "several domains were migrated from this source (%s): set the VM name" % names
        return result
    record = found[0]
    meta = record["metadata"]
    recorded = meta.get("source") or {}
    changes = []
    if source_path and recorded.get("type") in FILE_SOURCES:
        changes = source_changes(recorded, record.get("source_stat", {"error": "no source file was recorded"}))
    result.update(name=record["name"], phase=meta.get("phase"), running=record["running"],
                  validated_at=meta.get("validated_at"), source_type=recorded.get("type"), source_changes=changes)
    if meta.get("phase") != "validated":
        result["reason"] = "the migration reached phase %r, not 'validated'" % meta.get("phase")
    elif changes:
        result["reason"] = "the source changed since it was migrated: %s" % "; ".join(changes)
    else:
        result["complete"] = True
        result["reason"] = "migrated and validated %s" % meta.get("validated_at")
    return result


def _from_source(record, real_source_path):
    return record.get("source_realpath") == real_source_path


def describe(conn, source_path=None, name=None):
    """Is there a finished migration of this source on the host behind ``conn``, and if not, why not."""
    name = domain_name_for(name)
    found = records(conn, name)
    if source_path:
        real = os.path.realpath(source_path)
        found = [record for record in found if _from_source(record, real)]
    return verdict(found, source_path, name)


def verdict_from_listing(listing, source_path=None, name=None):
    """``describe``'s answer computed from a host's ``records`` (taken there moments ago), or None
    when the listing cannot settle it exactly.

    The real path of ``source_path`` can only be worked out on the host. When ``source_path`` is
    already the real path recorded for some domain, the domains migrated from it are exactly those
    recorded with that real path, and their ``source_stat`` is the stat of ``source_path``. Only a
    complete migration is answered: anything else is asked of the host again, so a listing that is
    a moment old can at worst send a VM down the exact path."""
    name = domain_name_for(name)
    found = [record for record in listing if not name or record["name"] == name]
    if source_path:
        if not any(_from_source(record, source_path) for record in found):
            return None
        found = [record for record in found if _from_source(record, source_path)]
    result = verdict(found, source_path, name)
    return result if result["complete"] else None


def asks_about_one_source(args):
    """Whether the module's arguments ask about one source (else they ask for the host's listing)."""
    return any(args.get(option) for option in SOURCE_OPTIONS)


def answer(conn, source_path=None, name=None):
    """The module's answer from the host behind ``conn``: its listing, or the verdict on one source."""
    if not asks_about_one_source({"source_path": source_path, "name": name}):
        return {"migrations": records(conn)}
    return describe(conn, source_path, name)


def read_listing(uri):
    """``records`` of the host at ``uri`` over a read-only connection (LibvirtConnectionError when it
    cannot be opened)."""
    conn = open_connection(uri, read_only=True)
    try:
        return records(conn)
    finally:
        conn.close()


def run(module):
    """The migration_state module's result."""
    params = module.params
    conn = connect_for_module(module, params["uri"])
    try:
        return dict(changed=False, **answer(conn, params["source_path"], params["name"]))
    finally:
        conn.close()
