"""vsphere_vm_info's answer: refusals that need no vCenter, and the fleet filter by datacenter and folder."""

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_info import _in_scope, answer

PARAMS = {"name": None, "moid": None, "uuid": None, "spec_name": None, "datacenter": None, "folder": None}


def test_a_spec_name_without_a_selected_vm_is_refused_with_the_fix():
    with pytest.raises(SourceError) as err:
        answer(conn=None, params=dict(PARAMS, spec_name="web01"))
    assert err.value.problem == "spec_name needs one selected VM" and "name, moid or uuid" in err.value.fix


def test_the_fleet_is_filtered_by_datacenter_and_folder_ignoring_slashes():
    place = {"datacenter": "DC0", "folder": "/prod/web/"}
    assert _in_scope(place, PARAMS)
    assert _in_scope(place, dict(PARAMS, datacenter="DC0", folder="prod/web"))
    assert not _in_scope(place, dict(PARAMS, datacenter="DC1"))
    assert not _in_scope(place, dict(PARAMS, folder="prod/db"))
