# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options every vSphere module shares (docs: doc_fragments/vsphere.py)."""

from __future__ import annotations

try:
    from ansible.module_utils.basic import env_fallback
except ImportError:  # plain-Python unit tests
    env_fallback = None


def connection_argument_spec():
    return dict(
        hostname=dict(type="str", fallback=(env_fallback, ["VMWARE_HOST"])),
        username=dict(type="str", fallback=(env_fallback, ["VMWARE_USER"])),
        password=dict(type="str", no_log=True, fallback=(env_fallback, ["VMWARE_PASSWORD"])),
        port=dict(type="int", default=443, fallback=(env_fallback, ["VMWARE_PORT"])),
        validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["VMWARE_VALIDATE_CERTS"])),
        timeout=dict(type="int", default=60),
        name=dict(type="str"),
        moid=dict(type="str"),
        uuid=dict(type="str"),
        datacenter=dict(type="str"),
        folder=dict(type="str"),
    )


def connect_from_params(params):
    from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import connect

    return connect(params["hostname"], params["username"], params["password"], port=params["port"],
                   validate_certs=params["validate_certs"], timeout=params["timeout"])


def selected_vm(conn, params):
    from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_spec import find_vm

    return find_vm(conn, name=params["name"], moid=params["moid"], uuid=params["uuid"],
                   datacenter=params["datacenter"], folder=params["folder"])
