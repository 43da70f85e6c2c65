#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_pool
short_description: Ensure a libvirt directory storage pool exists, is active and autostarts
version_added: 0.1.0
description:
  - Defines a libvirt storage pool of type C(dir) for O(path), builds it (creates the directory when
    missing), starts it, marks it autostart and refreshes it so volumes written by other tools (such as
    M(v2kvm.migrate.disk_convert)) are listed.
  - An existing pool with the same name but another path is refused rather than moved; nothing is
    redefined behind the volumes it holds.
  - O(state=absent) stops the pool and removes its definition only. The directory and every file in it
    are left alone.
options:
  name:
    description:
      - Name of the libvirt storage pool.
    type: str
    required: true
  path:
    description:
      - Directory that holds the pool's volumes. Required when O(state=present).
    type: path
  state:
    description:
      - V(present) ensures the pool is defined, active and autostarts. V(absent) removes the definition.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.libvirt
  - v2kvm.migrate.libvirt.attributes
attributes:
  diff_mode:
    details: Shows the pool's path, whether it is active and whether it autostarts, before and after.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Make sure converted disks land in a libvirt pool
  v2kvm.migrate.storage_pool:
    name: migrated
    path: /var/lib/libvirt/images/migrated

- name: Forget the pool again (the files stay)
  v2kvm.migrate.storage_pool:
    name: migrated
    state: absent
"""

RETURN = r"""
path:
  description: Directory of the pool (null when the pool is absent).
  returned: always
  type: str
  sample: /var/lib/libvirt/images/migrated
capacity:
  description:
    - Size in bytes of the file system holding the pool.
    - In check mode before the pool exists, the size of the file system that would hold it.
  returned: always
  type: int
  sample: 107374182400
available:
  description: Free bytes in the pool.
  returned: always
  type: int
  sample: 53687091200
allocation:
  description: Bytes allocated in the pool's file system.
  returned: always
  type: int
  sample: 53687091200
"""

import os
import time
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._domain_metadata import parse_libvirt_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    connect_for_module,
    is_local_uri,
    libvirt,
)


def _pool_xml(name, path):
    root = ET.Element("pool", {"type": "dir"})
    ET.SubElement(root, "name").text = name
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "path").text = path
    return ET.tostring(root, encoding="unicode")


def _lookup(conn, name):
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def _state_of(pool):
    if pool is None:
        return {"state": "absent"}
    root = parse_libvirt_xml(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))
    return {
        "state": "present",
        "type": root.get("type"),
        "path": root.findtext("target/path"),
        "active": bool(pool.isActive()),
        "autostart": bool(pool.autostart()),
    }


def _sizes(pool):
    _state, capacity, allocation, available = pool.info()
    return {"capacity": capacity, "allocation": allocation, "available": available}


def _statvfs_sizes(path):
    # Check mode on a pool that does not exist yet: report the file system the pool would use.
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe or "/")
    except OSError:
        return {"capacity": None, "allocation": None, "available": None}
    capacity = st.f_blocks * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return {"capacity": capacity, "allocation": capacity - st.f_bfree * st.f_frsize, "available": available}


def ensure_present(module, conn, name, path):
    pool = _lookup(conn, name)
    before = _state_of(pool)
    if pool is not None and before["type"] != "dir":
        module.fail_json(msg="storage pool %s exists with type %s, not dir: choose another name for the "
                             "v2kvm pool" % (name, before["type"]))
    if pool is not None and os.path.normpath(before["path"] or "") != path:
        module.fail_json(msg="storage pool %s already exists for %s, not %s: use that path, or another "
                             "pool name (the existing pool is not moved)" % (name, before["path"], path))
    after = {"state": "present", "type": "dir", "path": path, "active": True, "autostart": True}
    changed = before != after
    if not module.check_mode:
        pool = _set_up(module, conn, pool, name, path)
        sizes = _sizes(pool)
    else:
        sizes = _sizes(pool) if pool is not None and before["active"] else _statvfs_sizes(path)
    return changed, before, after, sizes


def _set_up(module, conn, pool, name, path, attempts=5):
    """Define, build, start and autostart the pool; returns it.

    The forks of one run all ensure the same pool at the same moment: another fork may define or
    start it between our lookup and our call. Such a lost race is not an error: look again and go on.
    """
    for attempt in range(attempts):
        try:
            if pool is None:
                pool = conn.storagePoolDefineXML(_pool_xml(name, path), 0)
                # Building a dir pool creates the directory; an existing one keeps its owner and mode.
                if not os.path.isdir(path) or not is_local_uri(module.params["uri"]):
                    pool.build(0)
            if not pool.isActive():
                pool.create(0)
            if not pool.autostart():
                pool.setAutostart(1)
            # Always rescan: other tasks add volume files behind libvirt's back. Not a change.
            pool.refresh(0)
            return pool
        except libvirt.libvirtError as exc:
            if attempt == attempts - 1:
                module.fail_json(msg="could not set up storage pool %s at %s: %s" % (name, path, exc))
            time.sleep(0.5)
            pool = _lookup(conn, name)
    return pool


def ensure_absent(module, conn, name):
    pool = _lookup(conn, name)
    before = _state_of(pool)
    after = {"state": "absent"}
    if pool is not None and not module.check_mode:
        try:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        except libvirt.libvirtError as exc:
            module.fail_json(msg="could not remove storage pool %s: %s" % (name, exc))
    return pool is not None, before, after, {"capacity": None, "allocation": None, "available": None}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str", required=True),
            path=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ("path",))],
        supports_check_mode=True,
    )
    conn = connect_for_module(module, module.params["uri"])
    name = module.params["name"]
    if module.params["state"] == "present":
        path = os.path.normpath(os.path.abspath(module.params["path"]))
        changed, before, after, sizes = ensure_present(module, conn, name, path)
    else:
        changed, before, after, sizes = ensure_absent(module, conn, name)
    result = dict(changed=changed, path=after.get("path"), **sizes)
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
