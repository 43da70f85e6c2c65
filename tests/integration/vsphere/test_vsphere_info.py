"""vsphere_vm_info, the inventory plugin, and connection errors against vsphere-sim."""

import json
import os
import subprocess

import pytest
import sim_rig
import yaml
from pyVmomi import vim
from vsphere.conftest import vsphere_args
from helpers import COLLECTIONS, REPO, run_module

pytestmark = pytest.mark.integration


def test_vm_info_returns_the_normalized_spec(vsim, make_vm, tmp_path):
    vm, name, unused = make_vm(firmware="efi", secure_boot=True, cpus=2, memory_mb=512)
    result, raw = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, name=name))
    spec = result["spec"]
    assert spec["name"] == name and spec["vcpus"] == 2 and spec["memory_mib"] == 512
    assert spec["firmware"] == "uefi" and spec["secure_boot"] is True
    assert spec["source"]["type"] == "vsphere" and spec["source"]["moid"] == vm._moId
    assert spec["source"]["datacenter"] == "DC0" and spec["source"]["cluster"] == "DC0_C0"
    assert spec["source"]["path"] == f"/DC0/vm/{name}"
    disk = spec["disks"][0]
    assert disk["datastore_path"] == f"[LocalDS_0] {name}/{name}.vmdk" and disk["capacity_bytes"] == 64 << 20
    assert spec["nics"] == [{"mac": "00:50:56:aa:bb:01", "network": "VM Network", "model": "vmxnet3"}]
    assert spec["guest_os"]["family"] == "linux"
    assert vsim.password not in raw


def test_unknown_vm_names_the_fix(vsim, make_vm, tmp_path):
    name = make_vm()[1]
    result, unused = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, name=name.upper()))
    assert result["failed"] and f"no VM with name {name.upper()!r}" in result["msg"]
    assert name in result["msg"], "a close name is suggested"


def test_wrong_password_is_clear_and_never_shown(vsim, tmp_path):
    wrong = "Wr0ng-" + vsim.password[::-1]
    result, raw = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, password=wrong, name="x"))
    assert result["failed"] and "wrong user name or password" in result["msg"], result
    assert wrong not in raw and vsim.password not in raw


def test_unreachable_and_tls_errors(vsim, tmp_path):
    closed, unused = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, port=1, name="x"))
    assert closed["failed"] and "cannot reach" in closed["msg"]
    tls, raw = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, name="x", validate_certs=True))
    assert tls["failed"] and "TLS certificate" in tls["msg"] and "validate_certs" in tls["msg"]
    assert vsim.password not in raw


def test_slow_method_hits_the_timeout_cleanly(sim_binary, tmp_path):
    slow = sim_rig.start_simulator(sim_binary, "-method-delay", "RetrievePropertiesEx:4000")
    try:
        result, unused = run_module("vsphere_vm_info", tmp_path, **vsphere_args(slow, timeout=1), proc_timeout=60)
    finally:
        slow.stop()
    assert result["failed"] and "did not answer" in result["msg"] and "within 1 s" in result["msg"], result


def test_inventory_plugin_groups_and_filters(vsim, make_vm, tmp_path):
    name = make_vm(power_on=True)[1]
    config = tmp_path / "lab.vsphere.yml"
    config.write_text(f"""plugin: v2kvm.migrate.vsphere
hostname: {vsim.host}
port: {vsim.port}
username: {vsim.username}
validate_certs: false
filters:
  - "v2kvm_spec.source.power_state == 'poweredOn'"
keyed_groups:
  - key: v2kvm_spec.firmware
    prefix: firmware
""")
    env = dict(os.environ, VMWARE_PASSWORD=vsim.password, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
               ANSIBLE_INVENTORY_ENABLED="v2kvm.migrate.vsphere")
    proc = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible-inventory"), "-i", str(config), "--list"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert vsim.password not in proc.stdout + proc.stderr
    # Inventory strings come out marked untrusted (never templated): a VM annotation may hold "{{ }}".
    data = json.loads(proc.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d) if len(d) == 1 else d)
    hostvars = data["_meta"]["hostvars"]
    assert hostvars[name]["v2kvm_spec"]["source"]["moid"].startswith("vm-")
    assert name in data["vsphere_dc_DC0"]["hosts"] and name in data["vsphere_cluster_DC0_C0"]["hosts"]
    assert name in data["vsphere_power_poweredOn"]["hosts"] and name in data["firmware_bios"]["hosts"]
    assert name in data["vsphere_os_linux"]["hosts"]
    assert all(v["v2kvm_spec"] is None or v["v2kvm_spec"]["source"]["power_state"] == "poweredOn"
               for v in hostvars.values()), "the filter keeps only running VMs"


def test_inventory_groups_by_custom_attribute(vsim, vsi, make_vm, tmp_path):
    vm, name, unused = make_vm()
    other = make_vm()[1]
    fields = vsi.RetrieveContent().customFieldsManager
    # Attribute definitions are global to the (shared) simulator: a name of this test's own.
    attribute = "wave-" + name[-6:]
    field = fields.AddCustomFieldDef(name=attribute, moType=vim.VirtualMachine)
    fields.SetField(entity=vm, key=field.key, value="3 (night)")
    # The attribute selects the VM; the second VM is kept by its path, to see a VM without attributes.
    wanted = "vsphere_attributes.\"%s\" == '3 (night)' || contains(vsphere_path, '%s')" % (attribute, other)
    config = tmp_path / "waves.vsphere.yml"
    config.write_text(yaml.safe_dump({"plugin": "v2kvm.migrate.vsphere", "hostname": vsim.host, "port": vsim.port,
                                      "username": vsim.username, "validate_certs": False, "filters": [wanted]}))
    env = dict(os.environ, VMWARE_PASSWORD=vsim.password, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
               ANSIBLE_INVENTORY_ENABLED="v2kvm.migrate.vsphere")
    proc = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible-inventory"), "-i", str(config), "--list"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d) if len(d) == 1 else d)
    group = "vsphere_attr_wave_%s_3__night" % name[-6:]
    assert data[group]["hosts"] == [name], data.keys()
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted([name, other]), "the filter on the attribute selects the VM"
    assert hostvars[name]["vsphere_attributes"] == {attribute: "3 (night)"}
    assert hostvars[other]["vsphere_attributes"] == {} and hostvars[other]["vsphere_tags"] == []
