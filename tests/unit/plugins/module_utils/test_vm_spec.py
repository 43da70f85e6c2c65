"""The VM spec rules: names, guest family, and validation of a whole spec."""

import copy

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SpecError
from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import (
    check_vm_name,
    guest_family,
    validate_spec,
)


@pytest.mark.parametrize("name", ["web01", "a", "DB_2.old+new-3", "9" * 64])
def test_valid_names(name):
    assert check_vm_name(name, "test") == name


@pytest.mark.parametrize("name", ["", "-web", ".hidden", "web 01", "web/01", "w" * 65, "vm\n", "ünï", None])
def test_invalid_names_name_the_override(name):
    with pytest.raises(SpecError, match="`name` option"):
        check_vm_name(name, "test")


@pytest.mark.parametrize("os_id, description, family", [
    ("debian11_64Guest", "", "linux"),
    ("windows2019srv_64Guest", "", "windows"),
    ("winNetEnterprise64Guest", "", "windows"),
    ("96", "Debian GNU/Linux 10 (64-bit)", "linux"),
    ("1", "Microsoft Windows Server 2016", "windows"),
    ("freebsd12_64Guest", "FreeBSD 12", "other"),
    ("", "", "other"),
])
def test_guest_family(os_id, description, family):
    assert guest_family(os_id, description) == family


GOOD = {
    "name": "web01",
    "source": {"type": "ova", "path": "/data/web01.ova", "manifest": "sha256"},
    "vcpus": 2, "cores_per_socket": 1, "memory_mib": 2048, "firmware": "bios", "secure_boot": False,
    "guest_os": {"id": "debian11_64Guest", "description": "Debian", "family": "linux"},
    "disks": [{
        "id": "vmdisk1", "file": "web01-disk1.vmdk", "path": None, "member": "web01-disk1.vmdk", "offset": 1536,
        "size": 1000, "format": "vmdk", "subformat": "streamOptimized", "compression": None,
        "capacity_bytes": 1 << 30, "populated_bytes": None, "controller": "scsi", "unit": 0,
        "sha256": "ab" * 32, "sha1": None,
    }],
    "nics": [{"mac": "00:50:56:aa:bb:cc", "network": "VM Network", "model": "vmxnet3"}],
    "annotation": "",
}


def test_good_spec_validates():
    assert validate_spec(copy.deepcopy(GOOD)) == GOOD


@pytest.mark.parametrize("path, value, field", [
    (("vcpus",), 0, "vcpus"),
    (("vcpus",), True, "vcpus"),
    (("cores_per_socket",), 3, "cores_per_socket"),
    (("memory_mib",), "2G", "memory_mib"),
    (("firmware",), "efi", "firmware"),
    (("secure_boot",), True, "secure_boot"),
    (("source", "type"), "zip", "source.type"),
    (("source", "path"), "relative.ova", "source.path"),
    (("source", "manifest"), "md5", "source.manifest"),
    (("guest_os", "family"), "bsd", "guest_os.family"),
    (("disks", 0, "path"), "/data/web01-disk1.vmdk", "disks[0].path"),
    (("disks", 0, "format"), "vdi", "disks[0].format"),
    (("disks", 0, "compression"), "bzip2", "disks[0].compression"),
    (("disks", 0, "capacity_bytes"), "20 GiB", "disks[0].capacity_bytes"),
    (("disks", 0, "controller"), "usb", "disks[0].controller"),
    (("disks", 0, "sha256"), "xyz", "disks[0].sha256"),
    (("nics", 0, "mac"), "00:50:56:AA:BB:CC", "nics[0].mac"),
    (("disks",), [], "disks"),
])
def test_spec_rule_violations_name_the_field(path, value, field):
    spec = copy.deepcopy(GOOD)
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError, match=r"field %s is" % field.replace("[", r"\[").replace("]", r"\]")):
        validate_spec(spec)
