"""vsphere_export given bad input against vsphere-sim: each refusal names the problem and the fix (in ``msg``
and in ``problem`` / ``fix``), shows no traceback and never the password, and escapes any control character
that came from vCenter; a refused export has touched neither the VM's power nor dest."""

import os
import socket
import uuid

import pytest
import sim_rig
from helpers import run_module
from vsphere.conftest import vsphere_args

pytestmark = pytest.mark.integration


def _refused(result, raw, password, problem, fix):
    assert result.get("failed"), result
    msg = result["msg"]
    assert problem in result["problem"] and problem in msg, msg
    assert fix in result["fix"] and "Fix: %s" % fix in msg, msg
    assert msg.isprintable(), "control characters escaped: %r" % msg
    assert "Traceback" not in raw and password not in raw
    return msg


def test_a_vm_name_that_does_not_exist(vsim, vsi, tmp_path):
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name="no-such-vm", dest=str(tmp_path)))
    _refused(result, raw, vsim.password, "no VM with name 'no-such-vm' on %s" % vsim.host,
             "check the name (it is case-sensitive)")


def test_a_moid_that_does_not_exist(vsim, vsi, tmp_path):
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, moid="vm-424242", dest=str(tmp_path)))
    _refused(result, raw, vsim.password, "no VM with moid vm-424242", "check the name")


def test_a_wrong_password_is_named_and_never_shown(vsim, vsi, tmp_path):
    wrong = "Wr0ng-" + uuid.uuid4().hex
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name="x", dest=str(tmp_path),
                                                                        password=wrong))
    _refused(result, raw, wrong, "refused the login of user '%s': wrong user name or password" % vsim.username,
             "check username and password")
    assert vsim.password not in raw


def test_an_untrusted_certificate_names_the_fix(vsim, vsi, tmp_path):
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name="x", dest=str(tmp_path),
                                                                        validate_certs=True))
    _refused(result, raw, vsim.password, "the TLS certificate of %s:%d cannot be verified" % (vsim.host, vsim.port),
             "install the vCenter CA certificate in the system trust store, or set validate_certs: false for a lab")


def test_nothing_listening_on_the_port(vsim, vsi, tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name="x", dest=str(tmp_path),
                                                                        port=port))
    _refused(result, raw, vsim.password, "cannot reach %s:%d" % (vsim.host, port),
             "check hostname, port and that a firewall lets HTTPS through")


def test_a_vm_name_with_control_characters_comes_out_escaped(vsim, vsi, tmp_path):
    # SOAP is XML 1.0: ESC (U+001B) cannot travel in a vCenter name, but LF, TAB, the 8-bit CSI (U+009B, which
    # terminals take for ESC [) and a bidi override (U+202E) can.
    name = "Ctl-%s\u202eevil\x9b2J\nFAKE: ok\tend" % uuid.uuid4().hex[:6]
    sim_rig.create_vm(vsi, name, [])
    asked = name.lower()  # the case differs: the message suggests the real name
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=asked, dest=str(tmp_path)))
    msg = _refused(result, raw, vsim.password, "no VM with name", "check the name (it is case-sensitive)")
    assert "similar names:" in msg
    for char, escaped in (("\u202e", "\\u202e"), ("\x9b", "\\x9b"), ("\n", "\\n"), ("\t", "\\t")):
        assert char not in msg and escaped in msg, msg
    assert "\\nFAKE: ok" in msg, "the would-be second line stays on the first one"


def test_a_physical_rdm_disk_is_refused_before_the_vm_is_touched(vsim, vsi, make_vm, tmp_path):
    vm, name, unused = make_vm(prefix="v2kvm-test-prdm")
    sim_rig.attach_as_rdm(vm, "physicalMode")
    dest = tmp_path / "dest"
    dest.mkdir()
    for method in ("nfc", "datastore"):
        result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=name, dest=str(dest),
                                                                            method=method))
        _refused(result, raw, vsim.password, "disk scsi0-0 of %s is a physical-mode raw device mapping" % name,
                 "migrate the LUN separately (present it to the KVM host) or convert the RDM to a virtual disk")
        assert result["power_actions"] == [] and os.listdir(dest) == []


def test_a_disk_backing_outside_its_datastore_is_never_read(vsim, vsi, boot_raw, tmp_path):
    root = sim_rig.datastore_dir(vsi)
    outside = tmp_path / "outside"
    outside.mkdir()
    # A disk whose descriptor says it lives in LocalDS_0 but whose path climbs out of it.
    unused, flat, size = sim_rig.write_esxi_disk(vsi, "v2kvm-outside-%s" % uuid.uuid4().hex[:6], "secret", boot_raw)
    os.replace(os.path.join(os.path.dirname(flat), "secret.vmdk"), outside / "secret.vmdk")
    os.replace(flat, outside / "secret-flat.vmdk")
    climbing = "[LocalDS_0] %s" % os.path.relpath(outside / "secret.vmdk", root)
    assert climbing.startswith("[LocalDS_0] ../")
    name = "v2kvm-test-escape-%s" % uuid.uuid4().hex[:6]
    sim_rig.create_vm(vsi, name, [sim_rig.disk_spec(climbing, size, key=2000)])
    dest = tmp_path / "dest"
    dest.mkdir()
    for method in ("datastore", "nfc", "warm"):
        result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name=name, dest=str(dest),
                                                                            method=method))
        _refused(result, raw, vsim.password, "the backing file of disk scsi0-0 of %s, '%s', lies outside its "
                 "datastore LocalDS_0" % (name, climbing), "re-attach the disk in vCenter from its file inside")
        assert result["power_actions"] == [] and os.listdir(dest) == []


def test_dest_that_is_not_a_directory(vsim, vsi, tmp_path):
    result, raw = run_module("vsphere_export", tmp_path, **vsphere_args(vsim, name="x",
                                                                        dest=str(tmp_path / "missing")))
    assert result.get("failed") and "dest %s is not a directory" % (tmp_path / "missing") in result["msg"], result
    assert "Fix: create it first" in result["msg"] and vsim.password not in raw
