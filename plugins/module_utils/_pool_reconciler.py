# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A libvirt directory storage pool, reconciled: what the storage_pool module does.

``PoolReconciler(module).run()`` reads the pool as libvirt has it (type, path, active, autostart),
compares it with the wanted state (present: a dir pool at the path, active and autostarting; absent:
no definition), acts only outside check mode and returns the module's result (``changed``, ``path``,
the sizes, and ``diff`` in diff mode). An existing pool of another type or path is refused, never moved.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import lookup_pool, parse_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    connect_for_module,
    is_local_uri,
    libvirt,
)

NO_SIZES = {"capacity": None, "allocation": None, "available": None}


def pool_xml(name, path):
    root = ET.Element("pool", {"type": "dir"})
    ET.SubElement(root, "name").text = name
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "path").text = path
    return ET.tostring(root, encoding="unicode")


def inactive_xml_flags():
    # The persistent definition: what the pool is defined as, not a transient runtime view.
    return libvirt.VIR_STORAGE_XML_INACTIVE


def state_of(pool):
    """The pool's state as the module compares and shows it."""
    if pool is None:
        return {"state": "absent"}
    root = parse_xml(pool.XMLDesc(inactive_xml_flags()))
    return {
        "state": "present",
        "type": root.get("type"),
        "path": root.findtext("target/path"),
        "active": bool(pool.isActive()),
        "autostart": bool(pool.autostart()),
    }


def wanted_state(path):
    return {"state": "present", "type": "dir", "path": path, "active": True, "autostart": True}


def sizes_of(pool):
    _state, capacity, allocation, available = pool.info()
    return {"capacity": capacity, "allocation": allocation, "available": available}


def statvfs_sizes(path):
    """The sizes of the file system that would hold a pool at ``path`` (check mode, no pool yet)."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe or "/")
    except OSError:
        return dict(NO_SIZES)
    capacity = st.f_blocks * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return {"capacity": capacity, "allocation": capacity - st.f_bfree * st.f_frsize, "available": available}


class PoolReconciler:
    """One storage pool, reconciled with the module's options (see the module documentation)."""

    def __init__(self, module, conn=None):
        self.module = module
        self.params = module.params
        self.conn = conn
        self.name = self.params["name"]

    def run(self):
        if self.conn is None:
            self.conn = connect_for_module(self.module, self.params["uri"])
        if self.params["state"] == "present":
            path = os.path.normpath(os.path.abspath(self.params["path"]))
            changed, before, after, sizes = self.present(path)
        else:
            changed, before, after, sizes = self.absent()
        result = dict(changed=changed, path=after.get("path"), **sizes)
        if self.module._diff:
            result["diff"] = {"before": before, "after": after}
        return result

    def present(self, path):
        pool = lookup_pool(self.conn, self.name)
        before = state_of(pool)
        self._refuse_another_pool(pool, before, path)
        after = wanted_state(path)
        if not self.module.check_mode:
            pool = self._set_up(pool, path)
            sizes = sizes_of(pool)
        else:
            sizes = sizes_of(pool) if pool is not None and before["active"] else statvfs_sizes(path)
        return before != after, before, after, sizes

    def _refuse_another_pool(self, pool, before, path):
        if pool is None:
            return
        if before["type"] != "dir":
            self.module.fail_json(msg="storage pool %s exists with type %s, not dir: choose another name for the "
                                      "v2kvm pool" % (self.name, before["type"]))
        if os.path.normpath(before["path"] or "") != path:
            self.module.fail_json(msg="storage pool %s already exists for %s, not %s: use that path, or another "
                                      "pool name (the existing pool is not moved)" % (self.name, before["path"], path))

    def _set_up(self, pool, path, attempts=5):
        """Define, build, start and autostart the pool; returns it.

        The forks of one run all ensure the same pool at the same moment: another fork may define or
        start it between our lookup and our call. Such a lost race is not an error: look again and go on.
        """
        for attempt in range(attempts):
            try:
                return self._set_up_once(pool, path)
            except libvirt.libvirtError as exc:
                if attempt == attempts - 1:
                    self.module.fail_json(msg="could not set up storage pool %s at %s: %s" % (self.name, path, exc))
                time.sleep(0.5)
                pool = lookup_pool(self.conn, self.name)
        return pool

    def _set_up_once(self, pool, path):
        if pool is None:
            pool = self.conn.storagePoolDefineXML(pool_xml(self.name, path), 0)
            # Building a dir pool creates the directory; an existing one keeps its owner and mode.
            if not os.path.isdir(path) or not is_local_uri(self.params["uri"]):
                pool.build(0)
        if not pool.isActive():
            pool.create(0)
        if not pool.autostart():
            pool.setAutostart(1)
        # Always rescan: other tasks add volume files behind libvirt's back. Not a change.
        pool.refresh(0)
        return pool

    def absent(self):
        pool = lookup_pool(self.conn, self.name)
        before = state_of(pool)
        if pool is not None and not self.module.check_mode:
            try:
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
            except libvirt.libvirtError as exc:
                self.module.fail_json(msg="could not remove storage pool %s: %s" % (self.name, exc))
        return pool is not None, before, {"state": "absent"}, dict(NO_SIZES)
