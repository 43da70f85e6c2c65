"""The vSphere source path stays free of the OVA reader: no tar, OVF or VMDK-file code is imported with it."""

import json
import os
import subprocess
import sys

import pytest

MODULE_UTILS = "ansible_collections.v2kvm.migrate.plugins.module_utils."
OVA_READER = [MODULE_UTILS + name for name in ("_ova_source", "_ova_disks", "_ova_archive", "_ovf_parse")]
FORBIDDEN = OVA_READER + ["tarfile", "defusedxml"]
PLUGINS = "ansible_collections.v2kvm.migrate.plugins."
# The vSphere entry points import _vsphere_spec when they run, so each is imported together with it.
VSPHERE_ENTRY_POINTS = [
    MODULE_UTILS + "_vsphere_module",
    PLUGINS + "modules.vsphere_vm_info",
    PLUGINS + "inventory.vsphere",
]


def _loaded_after_importing(names):
    """``sys.modules`` of a fresh interpreter that imported ``names``: this process has loaded everything."""
    code = (
        "import importlib, json, sys\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(names)],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path)),
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


@pytest.mark.parametrize("entry_point", VSPHERE_ENTRY_POINTS)
def test_vsphere_path_does_not_import_the_ova_reader(entry_point):
    loaded = _loaded_after_importing([entry_point, MODULE_UTILS + "_vsphere_spec"])

    assert {entry_point, MODULE_UTILS + "_vsphere_spec", MODULE_UTILS + "_vm_spec"} <= loaded
    assert sorted(loaded.intersection(FORBIDDEN)) == []


def test_the_check_sees_the_ova_reader_when_it_is_imported():
    loaded = _loaded_after_importing([MODULE_UTILS + "_vsphere_spec", PLUGINS + "modules.ova_info"])

    assert set(FORBIDDEN) - {"defusedxml"} <= loaded
