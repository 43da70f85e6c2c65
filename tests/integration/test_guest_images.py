"""The test rig's guests really boot (qemu, TCG) and its OVAs are what VMware would ship."""

import hashlib
import os
import re
import subprocess
import sys
import tarfile

import pytest
from defusedxml import ElementTree

# tests/ is not a package: put the repo root on sys.path so ``tests.rig`` imports.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.rig import appliances, guest_image, ovf_package  # noqa: E402
from tests.rig.qemu_boot import boot_and_wait  # noqa: E402

pytestmark = pytest.mark.integration

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
VMW = "{http://www.vmware.com/schema/ovf}"
BOOT_TIMEOUT = 240
FIRST_TICK = r"V2KVM-TICK 1\r?\n"


@pytest.fixture(scope="session")
def rig_work(tmp_path_factory):
    """Shared cache (initramfs, raw disks) for the whole session."""
    return str(tmp_path_factory.mktemp("rig-work"))


@pytest.fixture(scope="session")
def bios_disk(rig_work):
    return guest_image.make_boot_disk(os.path.join(rig_work, "bios.raw"), marker="t-bios", workdir=rig_work)


@pytest.fixture(scope="session")
def data_disk(rig_work):
    return guest_image.make_data_disk(os.path.join(rig_work, "data.raw"), files=appliances.DATA_FILES)


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory, rig_work):
    return appliances.build_demo_set(str(tmp_path_factory.mktemp("demo-set")), workdir=rig_work)


def console_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip().startswith("V2KVM-")]


def test_bios_disk_boots_prints_marker_and_sees_vda(bios_disk, tmp_path):
    text = boot_and_wait([bios_disk], firmware="bios", pattern=FIRST_TICK, timeout=BOOT_TIMEOUT,
                         log_path=tmp_path / "console.log")
    assert console_lines(text)[:3] == ["V2KVM-BOOT-OK t-bios", "V2KVM-DISKS vda", "V2KVM-TICK 1"]


def test_bios_disk_with_data_disk_sees_vda_and_vdb(bios_disk, data_disk, tmp_path):
    text = boot_and_wait([bios_disk, data_disk], firmware="bios", pattern=FIRST_TICK, timeout=BOOT_TIMEOUT,
                         log_path=tmp_path / "console.log")
    assert "V2KVM-DISKS vda vdb" in console_lines(text)


def test_guest_keeps_ticking(bios_disk, tmp_path):
    text = boot_and_wait([bios_disk], firmware="bios", pattern=r"V2KVM-TICK 3\r?\n", timeout=BOOT_TIMEOUT,
                         log_path=tmp_path / "console.log")
    ticks = [line for line in console_lines(text) if line.startswith("V2KVM-TICK")]
    assert ticks == ["V2KVM-TICK 1", "V2KVM-TICK 2", "V2KVM-TICK 3"]


def test_uefi_disk_boots_with_ovmf(rig_work, tmp_path):
    disk = guest_image.make_boot_disk(str(tmp_path / "uefi.raw"), marker="t-uefi", firmware="uefi",
                                      workdir=rig_work)
    text = boot_and_wait([disk], firmware="uefi", pattern=FIRST_TICK, timeout=BOOT_TIMEOUT,
                         log_path=tmp_path / "console.log")
    assert console_lines(text)[:2] == ["V2KVM-BOOT-OK t-uefi", "V2KVM-DISKS vda"]


def test_uefi_disk_does_not_boot_with_bios(rig_work, tmp_path):
    # The GPT/ESP disk has no BIOS boot code: proof the firmware choice really matters.
    disk = guest_image.make_boot_disk(str(tmp_path / "uefi.raw"), marker="t-uefi", firmware="uefi",
                                      workdir=rig_work)
    with pytest.raises(TimeoutError):
        boot_and_wait([disk], firmware="bios", pattern="V2KVM-BOOT-OK", timeout=12,
                      log_path=tmp_path / "console.log")


def test_broken_disk_panics(rig_work, tmp_path):
    disk = guest_image.make_boot_disk(str(tmp_path / "broken.raw"), marker="t-broken", broken=True,
                                      workdir=rig_work)
    text = boot_and_wait([disk], firmware="bios", pattern=guest_image.PANIC, timeout=BOOT_TIMEOUT,
                         log_path=tmp_path / "console.log")
    assert "V2KVM-BOOT-OK" not in text


def test_data_disk_holds_the_files(data_disk):
    for name, content in appliances.DATA_FILES.items():
        out = subprocess.run(["debugfs", "-R", f"cat /{name}", data_disk], check=True, capture_output=True).stdout
        assert out == content


@pytest.mark.parametrize("subformat", ["streamOptimized", "monolithicSparse"])
def test_vmdk_converts_back_to_identical_bytes(bios_disk, tmp_path, subformat):
    vmdk = ovf_package.to_vmdk(bios_disk, str(tmp_path / "disk.vmdk"), subformat)
    info = ovf_package.image_info(vmdk)
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == subformat
    back = str(tmp_path / "back.raw")
    subprocess.run(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", vmdk, back], check=True)
    subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", bios_disk, back], check=True)
    assert guest_image.file_digest(back) == guest_image.file_digest(bios_disk)
    # The image carries real bytes, not just an empty partition table.
    assert ovf_package.populated_bytes(bios_disk) > 8 * 1024 * 1024


def _ova_members(path):
    with tarfile.open(path) as tar:
        return [(member.name, member.size, tar.extractfile(member).read()) for member in tar.getmembers()]


@pytest.mark.parametrize("name", ["demo-bios", "demo-twodisk", "demo-broken", "demo-uefi"])
def test_demo_ova_layout_and_manifest(demo_set, name):
    members = _ova_members(demo_set[name])
    names = [member[0] for member in members]
    assert names[0] == f"{name}.ovf"
    assert names[-1] == f"{name}.mf"
    contents = {member[0]: member[2] for member in members}

    manifest = {}
    for line in contents[f"{name}.mf"].decode().splitlines():
        match = re.fullmatch(r"SHA256\((?P<file>[^)]+)\)= (?P<hex>[0-9a-f]{64})", line)
        assert match, line
        manifest[match["file"]] = match["hex"]
    assert set(manifest) == set(names[:-1])
    for member, digest in manifest.items():
        assert hashlib.sha256(contents[member]).hexdigest() == digest

    envelope = ElementTree.fromstring(contents[f"{name}.ovf"])
    files = {f.get(f"{OVF}href"): int(f.get(f"{OVF}size")) for f in envelope.iter(f"{OVF}File")}
    assert files == {member: len(contents[member]) for member in names[1:-1]}
    firmware = [c.get(f"{VMW}value") for c in envelope.iter(f"{VMW}Config") if c.get(f"{VMW}key") == "firmware"]
    assert firmware == (["efi"] if name == "demo-uefi" else [])
    assert envelope.find(f"{OVF}VirtualSystem").get(f"{OVF}id") == name


def test_demo_twodisk_ova_disks_boot(demo_set, tmp_path):
    with tarfile.open(demo_set["demo-twodisk"]) as tar:
        tar.extractall(tmp_path, filter="data")
    disks = [str(tmp_path / "demo-twodisk-disk1.vmdk"), str(tmp_path / "demo-twodisk-disk2.vmdk")]
    text = boot_and_wait(disks, firmware="bios", pattern=FIRST_TICK, timeout=BOOT_TIMEOUT,
                         log_path=tmp_path / "console.log")
    assert console_lines(text)[:2] == ["V2KVM-BOOT-OK demo-twodisk", "V2KVM-DISKS vda vdb"]


def test_demo_set_is_not_rebuilt_when_recipe_matches(demo_set, rig_work):
    before = {name: os.stat(path).st_mtime_ns for name, path in demo_set.items()}
    again = appliances.build_demo_set(os.path.dirname(demo_set["demo-bios"]), workdir=rig_work)
    assert again == demo_set
    assert {name: os.stat(path).st_mtime_ns for name, path in again.items()} == before


def test_bad_package_knobs(bios_disk, tmp_path):
    vmdk = ovf_package.to_vmdk(bios_disk, str(tmp_path / "bad-disk1.vmdk"), "streamOptimized")
    disk = ovf_package.disk_entry(vmdk, disk_id="vmdisk1")
    disk["size"] += 1
    ovf = ovf_package.write_ovf(str(tmp_path / "bad.ovf"), name="bad", vcpus=1, memory_mib=256, firmware="bios",
                                os_type="otherLinux64Guest", disks=[disk], nics=[])
    ova = ovf_package.make_ova(str(tmp_path / "bad.ova"), ovf, [vmdk], digest="sha1",
                               manifest_override={"bad-disk1.vmdk": "0" * 40}, extra_members={"junk.txt": b"x"})
    members = _ova_members(ova)
    assert [m[0] for m in members] == ["bad.ovf", "bad-disk1.vmdk", "bad.mf", "junk.txt"]
    manifest = members[2][2].decode()
    assert f"SHA1(bad-disk1.vmdk)= {'0' * 40}\n" in manifest
    assert f"SHA1(bad.ovf)= {ovf_package.file_digest(ovf, 'sha1')}\n" in manifest
    size = ElementTree.fromstring(members[0][2]).find(f"{OVF}References/{OVF}File").get(f"{OVF}size")
    assert int(size) == os.path.getsize(vmdk) + 1
