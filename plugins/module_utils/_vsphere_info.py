# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``vsphere_vm_info`` answers: one selected VM's spec, or every VM's spec with the VMs that could not be
read listed apart (one unreadable VM must not hide the fleet)."""

from __future__ import annotations

from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_module import connect_from_params, selected_vm


def _in_scope(place, params):
    if params["datacenter"] and place["datacenter"] != params["datacenter"]:
        return False
    return not params["folder"] or place["folder"].strip("/") == params["folder"].strip("/")


def every_spec(conn, params):
    """(specs sorted by inventory path, [{path, moid, msg}] of the VMs whose spec could not be built)."""
    from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec

    vms, tree, portgroups = vspec.collect(conn)
    specs, errors = [], []
    for ref, props in vms:
        place = vspec.placement(tree, props)
        if not _in_scope(place, params):
            continue
        try:
            specs.append(vspec.build_spec(ref, props, place, conn.host, portgroups=portgroups))
        except SourceError as exc:
            errors.append({"path": place["path"], "moid": ref._moId, "msg": str(exc)})
    specs.sort(key=lambda spec: spec["source"]["path"])
    return specs, errors


def answer(conn, params):
    """The module's result for an open connection."""
    from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec

    if params["name"] or params["moid"] or params["uuid"]:
        ref, props, place, portgroups = selected_vm(conn, params)
        return {"changed": False, "spec": vspec.build_spec(ref, props, place, conn.host, name=params["spec_name"],
                                                           portgroups=portgroups)}
    if params["spec_name"]:
        raise SourceError("spec_name needs one selected VM", "add name, moid or uuid")
    specs, errors = every_spec(conn, params)
    return {"changed": False, "vms": specs, "errors": errors}


def run(module):
    """Connect, answer, and fail with the password scrubbed from any message."""
    from ansible.module_utils.basic import missing_required_lib

    if not vconn.HAS_PYVMOMI:
        module.fail_json(msg=missing_required_lib("pyvmomi"), exception=str(vconn.PYVMOMI_IMPORT_ERROR))
    params = module.params
    try:
        with connect_from_params(params) as conn:
            return answer(conn, params)
    except SourceError as exc:
        module.fail_json(msg=vconn.scrub(exc, [params["password"]]), problem=exc.problem, fix=exc.fix)
    return None  # not reached: fail_json exits
