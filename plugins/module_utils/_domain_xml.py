# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM spec -> libvirt domain XML, as pure functions with byte-stable output.

``plan_from_spec`` resolves the spec plus the module's choices (networks, bus, machine, ...)
into a *plan*: a plain dict holding every decision. ``build_domain_xml`` renders a plan. The
same plan always renders the same bytes, so a digest of the rendering tells whether a
re-define would change anything, and a diff of two renderings is meaningful.

``summarize`` projects any domain XML (ours, or libvirt's expanded copy) onto the settings
we manage, so drift made outside v2kvm (virsh edit, virt-manager) can be detected without
tripping over the defaults libvirt adds (addresses, controllers, uuid, ...).
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as metadata_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import untrusted, untrusted_lines

DISK_BUSES = ("virtio", "sata", "scsi", "ide")
DOMAIN_TYPES = ("kvm", "qemu")
CPU_MODES = ("host-model", "host-passthrough", "maximum")
DEV_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}
USER_NETWORK = "user"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class DomainSpecError(ValueError):
    """The spec and options cannot make a domain; the message names the option to fix."""


def default_serial_log(name):
    return "/var/log/libvirt/qemu/%s-serial0.log" % name


def default_machine(firmware, disk_bus):
    """q35 (PCIe, SMM for Secure Boot) unless the disks need IDE, which only i440fx ('pc') has."""
    return "pc" if disk_bus == "ide" else "q35"


def default_cpu_mode(domain_type):
    """host-model under KVM (portable, near-native); under TCG libvirt's default (qemu64)."""
    return "host-model" if domain_type == "kvm" else None


def target_dev(bus, index):
    """vda, vdb, ..., vdz, vdaa: the name libvirt expects for the index-th disk on ``bus``."""
    letters = ""
    n = index
    while True:
        letters = string.ascii_lowercase[n % 26] + letters
        n = n // 26 - 1
        if n < 0:
            break
    return DEV_PREFIX[bus] + letters


def _topology(vcpus, cores_per_socket):
    cores = cores_per_socket if cores_per_socket and vcpus % cores_per_socket == 0 else 1
    return {"sockets": vcpus // cores, "cores": cores, "threads": 1}


def map_networks(nics, network_map, default_network):
    """Libvirt network (or 'user') for each source NIC, failing on the first unmapped one."""
    targets = []
    for index, nic in enumerate(nics):
        source = nic.get("network")
        if source in (network_map or {}):
            targets.append(network_map[source])
        elif default_network:
            targets.append(default_network)
        else:
            raise DomainSpecError(
                "NIC %d is on source network %r, which network_map does not map and no "
                "default_network is set: add %r to network_map (value: a libvirt network name, "
                "or 'user' for user-mode networking) or set default_network"
                % (index, source, source))
    return targets


def _check_choices(name, domain_type, disk_bus, spec_disks, disks):
    if not NAME_RE.match(name or ""):
        raise DomainSpecError(
            "domain name %r is not usable: it must match %s; set the name option" % (name, NAME_RE.pattern))
    if domain_type not in DOMAIN_TYPES:
        raise DomainSpecError("domain_type %r must be one of %s" % (domain_type, ", ".join(DOMAIN_TYPES)))
    if disk_bus not in DISK_BUSES:
        raise DomainSpecError("disk_bus %r must be one of %s" % (disk_bus, ", ".join(DISK_BUSES)))
    if not spec_disks:
        raise DomainSpecError("spec.disks is empty: a migrated VM needs at least its boot disk")
    if len(disks) != len(spec_disks):
        raise DomainSpecError(
            "disks has %d entries but spec.disks has %d: pass one target path per spec disk, in order"
            % (len(disks), len(spec_disks)))


def _platform(spec, *, firmware, machine, disk_bus, domain_type, cpu_mode):
    """firmware, secure boot, machine and CPU mode, checked against each other."""
    firmware = firmware or spec.get("firmware") or "bios"
    if firmware not in ("bios", "uefi"):
        raise DomainSpecError("firmware %r must be bios or uefi" % firmware)
    secure_boot = bool(spec.get("secure_boot")) and firmware == "uefi"
    machine = machine or default_machine(firmware, disk_bus)
    if disk_bus == "ide" and "q35" in machine:
        raise DomainSpecError("machine %s has no IDE controller: use disk_bus sata, or machine pc" % machine)
    if secure_boot and "q35" not in machine:
        raise DomainSpecError("Secure Boot needs SMM, which only q35 machines have: use machine q35")
    if cpu_mode is None:
        cpu_mode = default_cpu_mode(domain_type)
    elif cpu_mode not in CPU_MODES:
        raise DomainSpecError("cpu_mode %r must be one of %s" % (cpu_mode, ", ".join(CPU_MODES)))
    return {"firmware": firmware, "secure_boot": secure_boot, "machine": machine, "cpu_mode": cpu_mode}


def _plan_disks(disks, disk_bus):
    plan_disks = []
    for index, disk in enumerate(disks):
        if disk.get("format") not in ("qcow2", "raw"):
            raise DomainSpecError(
                "disk %s has format %r: only qcow2 and raw are attached; convert it with "
                "v2kvm.migrate.disk_convert first" % (disk.get("path"), disk.get("format")))
        plan_disks.append({
            "path": disk["path"],
            "format": disk["format"],
            "pool": disk.get("pool"),
            "volume": disk.get("volume"),
            "bus": disk_bus,
            "dev": target_dev(disk_bus, index),
        })
    return plan_disks


def _plan_nics(nics, network_map, default_network, keep_macs, nic_model):
    plan_nics = []
    for nic, target in zip(nics, map_networks(nics, network_map, default_network)):
        plan_nics.append({
            "network": None if target == USER_NETWORK else target,
            "mac": (nic.get("mac") or None) if keep_macs else None,
            "model": nic_model,
        })
    return plan_nics


def plan_from_spec(spec, *, name, disks, network_map=None, default_network=None, keep_macs=True,
                   disk_bus="virtio", nic_model="virtio", domain_type="qemu", machine=None,
                   cpu_mode=None, firmware=None, serial_log=None):
    """Every decision needed to render the domain, from the spec and the module's options.

    ``disks`` is index-aligned with spec['disks'] and holds resolved targets:
    {"path", "format", "pool", "volume"} (pool/volume None when no libvirt pool holds the file).
    ``domain_type`` must already be resolved (not 'auto'); ``cpu_mode`` None means the default
    for the domain type.
    """
    _check_choices(name, domain_type, disk_bus, spec.get("disks") or [], disks)
    platform = _platform(spec, firmware=firmware, machine=machine, disk_bus=disk_bus, domain_type=domain_type,
                         cpu_mode=cpu_mode)
    vcpus = int(spec.get("vcpus") or 1)
    memory_mib = int(spec.get("memory_mib") or 0)
    if vcpus < 1 or memory_mib < 1:
        raise DomainSpecError("spec.vcpus and spec.memory_mib must be >= 1 (got %r, %r)" % (vcpus, memory_mib))
    plan_disks = _plan_disks(disks, disk_bus)
    plan_nics = _plan_nics(spec.get("nics") or [], network_map, default_network, keep_macs, nic_model)

    guest_os = spec.get("guest_os") or {}
    return {
        "name": name,
        "domain_type": domain_type,
        "machine": platform["machine"],
        "memory_mib": memory_mib,
        "vcpus": vcpus,
        "topology": _topology(vcpus, int(spec.get("cores_per_socket") or 1)),
        "cpu_mode": platform["cpu_mode"],
        "firmware": platform["firmware"],
        "secure_boot": platform["secure_boot"],
        # Windows keeps its RTC in local time; everything else expects UTC.
        "clock": "localtime" if guest_os.get("family") == "windows" else "utc",
        # libvirt keeps <title> to one line; both are shown by virsh and virt-manager.
        "title": untrusted(spec["original_name"]) if spec.get("original_name") else "",
        "description": untrusted_lines(spec.get("annotation") or ""),
        "disks": plan_disks,
        "nics": plan_nics,
        "serial_log": serial_log or default_serial_log(name),
    }


def _sub(parent, tag, attrs=None, text=None):
    elem = ET.SubElement(parent, tag, attrs or {})
    if text is not None:
        elem.text = str(text)
    return elem


def _os(root, plan):
    attrs = {"firmware": "efi"} if plan["firmware"] == "uefi" else {}
    os_elem = _sub(root, "os", attrs)
    _sub(os_elem, "type", {"arch": "x86_64", "machine": plan["machine"]}, "hvm")
    if plan["firmware"] == "uefi":
        fw = _sub(os_elem, "firmware")
        enabled = "yes" if plan["secure_boot"] else "no"
        _sub(fw, "feature", {"enabled": enabled, "name": "enrolled-keys"})
        _sub(fw, "feature", {"enabled": enabled, "name": "secure-boot"})
    else:
        # SeaBIOS then writes its own messages ("Boot failed: not a bootable disk") to the
        # serial console, where validate can read them.
        _sub(os_elem, "bios", {"useserial": "yes"})


def _disk(devices, disk, boot):
    if disk["pool"]:
        elem = _sub(devices, "disk", {"type": "volume", "device": "disk"})
        _sub(elem, "driver", {"name": "qemu", "type": disk["format"], "discard": "unmap"})
        _sub(elem, "source", {"pool": disk["pool"], "volume": disk["volume"]})
    else:
        elem = _sub(devices, "disk", {"type": "file", "device": "disk"})
        _sub(elem, "driver", {"name": "qemu", "type": disk["format"], "discard": "unmap"})
        _sub(elem, "source", {"file": disk["path"]})
    _sub(elem, "target", {"dev": disk["dev"], "bus": disk["bus"]})
    if boot:
        _sub(elem, "boot", {"order": "1"})


def _interface(devices, nic, mac):
    if nic["network"] is None:
        elem = _sub(devices, "interface", {"type": "user"})
    else:
        elem = _sub(devices, "interface", {"type": "network"})
        _sub(elem, "source", {"network": nic["network"]})
    if mac:
        _sub(elem, "mac", {"address": mac.lower()})
    _sub(elem, "model", {"type": nic["model"]})


def build_domain_tree(plan, *, uuid=None, metadata=None, fallback_macs=None):
    """The domain as an ElementTree element. See build_domain_xml."""
    root = ET.Element("domain", {"type": plan["domain_type"]})
    _sub(root, "name", text=plan["name"])
    if uuid:
        _sub(root, "uuid", text=uuid)
    if plan.get("title"):
        _sub(root, "title", text=plan["title"])
    if plan["description"]:
        _sub(root, "description", text=plan["description"])
    if metadata is not None:
        _sub(root, "metadata").append(metadata_xml.to_element(metadata))
    _sub(root, "memory", {"unit": "MiB"}, plan["memory_mib"])
    _sub(root, "currentMemory", {"unit": "MiB"}, plan["memory_mib"])
    _sub(root, "vcpu", {"placement": "static"}, plan["vcpus"])
    _os(root, plan)
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if plan["secure_boot"]:
        _sub(features, "smm", {"state": "on"})
    cpu = _sub(root, "cpu", {"mode": plan["cpu_mode"]} if plan["cpu_mode"] else {})
    _sub(cpu, "topology", {k: str(plan["topology"][k]) for k in ("sockets", "cores", "threads")})
    _sub(root, "clock", {"offset": plan["clock"]})
    _sub(root, "on_poweroff", text="destroy")
    _sub(root, "on_reboot", text="restart")
    _sub(root, "on_crash", text="destroy")
    devices = _sub(root, "devices")
    for index, disk in enumerate(plan["disks"]):
        _disk(devices, disk, boot=index == 0)
    if any(d["bus"] == "scsi" for d in plan["disks"]):
        _sub(devices, "controller", {"type": "scsi", "index": "0", "model": "virtio-scsi"})
    fallback_macs = fallback_macs or []
    for index, nic in enumerate(plan["nics"]):
        mac = nic["mac"] or (fallback_macs[index] if index < len(fallback_macs) else None)
        _interface(devices, nic, mac)
    # A pty keeps `virsh console` working while virtlogd copies everything into the log file;
    # append='off' truncates it at every start, so the file only ever holds the current boot.
    serial = _sub(devices, "serial", {"type": "pty"})
    _sub(serial, "log", {"file": plan["serial_log"], "append": "off"})
    _sub(serial, "target", {"port": "0"})
    console = _sub(devices, "console", {"type": "pty"})
    _sub(console, "target", {"type": "serial", "port": "0"})
    channel = _sub(devices, "channel", {"type": "unix"})
    _sub(channel, "target", {"type": "virtio", "name": GUEST_AGENT_CHANNEL})
    graphics = _sub(devices, "graphics", {"type": "vnc", "autoport": "yes"})
    _sub(graphics, "listen", {"type": "address", "address": "127.0.0.1"})
    video = _sub(devices, "video")
    _sub(video, "model", {"type": "vga"})
    return root


def build_domain_xml(plan, *, uuid=None, metadata=None, fallback_macs=None):
    """Render a plan as domain XML (indented, attribute order fixed, so output is stable).

    Without uuid and metadata this is the canonical rendering the config digest covers.
    ``fallback_macs`` fills NICs that have no MAC in the plan (keep_macs false) with the MAC
    libvirt gave them earlier, so a re-define does not change a guest's MAC address.
    """
    root = build_domain_tree(plan, uuid=uuid, metadata=metadata, fallback_macs=fallback_macs)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def config_digest(plan):
    return metadata_xml.digest_of(build_domain_xml(plan))


def _machine_family(machine):
    if not machine:
        return None
    if machine == "q35" or machine.startswith("pc-q35"):
        return "q35"
    if machine == "pc" or machine.startswith("pc-i440fx"):
        return "pc"
    return machine


def _memory_kib(elem):
    if elem is None or elem.text is None:
        return None
    factor = {"b": 1 / 1024, "bytes": 1 / 1024, "kib": 1, "k": 1, "mib": 1024, "m": 1024,
              "gib": 1024 ** 2, "g": 1024 ** 2}
    return int(int(elem.text) * factor.get(elem.get("unit", "KiB").lower(), 1))


def _firmware(os_elem):
    if os_elem is None:
        return "bios", False
    secure = False
    for feature in os_elem.findall("firmware/feature"):
        if feature.get("name") == "secure-boot":
            secure = feature.get("enabled") == "yes"
    loader = os_elem.find("loader")
    if loader is not None and loader.get("secure") == "yes":
        secure = True
    is_efi = os_elem.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash")
    return ("uefi" if is_efi else "bios"), secure


def summarize(domain_xml):
    """The settings v2kvm manages, read from any domain XML, as a JSON-able dict."""
    root = metadata_xml.parse_libvirt_xml(domain_xml)
    os_elem = root.find("os")
    type_elem = os_elem.find("type") if os_elem is not None else None
    firmware, secure_boot = _firmware(os_elem)
    cpu = root.find("cpu")
    cpu_mode = cpu.get("mode") if cpu is not None else None
    if cpu_mode == "custom" and (cpu is None or cpu.find("model") is None):
        cpu_mode = None
    topo = cpu.find("topology") if cpu is not None else None
    disks = []
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        src = {} if source is None else source.attrib
        target = disk.find("target")
        driver = disk.find("driver")
        disks.append({
            "dev": target.get("dev") if target is not None else None,
            "bus": target.get("bus") if target is not None else None,
            "format": driver.get("type") if driver is not None else None,
            "source": ("%s/%s" % (src.get("pool"), src.get("volume"))) if "pool" in src else src.get("file"),
        })
    nics = []
    for iface in root.findall("devices/interface"):
        source = iface.find("source")
        mac = iface.find("mac")
        model = iface.find("model")
        nics.append({
            "type": iface.get("type"),
            "network": source.get("network") if source is not None else None,
            "mac": mac.get("address").lower() if mac is not None else None,
            "model": model.get("type") if model is not None else None,
        })
    serial_log = None
    for serial in root.findall("devices/serial"):
        log = serial.find("log")
        if log is not None:
            serial_log = log.get("file")
            break
    return {
        "type": root.get("type"),
        "name": root.findtext("name"),
        "memory_kib": _memory_kib(root.find("memory")),
        "vcpus": int(root.findtext("vcpu") or 0),
        "topology": None if topo is None else "%s sockets x %s cores x %s threads" % (
            topo.get("sockets"), topo.get("cores"), topo.get("threads")),
        "cpu_mode": cpu_mode,
        "machine": _machine_family(type_elem.get("machine") if type_elem is not None else None),
        "firmware": firmware,
        "secure_boot": secure_boot,
        "disks": disks,
        "nics": nics,
        "serial_log": serial_log,
    }


def comparable(live_summary, wanted_summary):
    """``live_summary`` with what we leave to libvirt blanked, so it never counts as drift.

    That is MACs we did not set, and the CPU model libvirt fills in (qemu64) when we ask for none.
    """
    live = dict(live_summary)
    if wanted_summary["cpu_mode"] is None and live["cpu_mode"] == "custom":
        live["cpu_mode"] = None
    nics = []
    for index, nic in enumerate(live_summary["nics"]):
        nic = dict(nic)
        wanted = wanted_summary["nics"][index] if index < len(wanted_summary["nics"]) else None
        if wanted is not None and wanted["mac"] is None:
            nic["mac"] = None
        nics.append(nic)
    live["nics"] = nics
    return live


def summary_text(summary, config_digest_value=None):
    """One setting per line, for a unified diff people can read."""
    lines = []
    if config_digest_value is not None:
        lines.append("config_digest: %s" % config_digest_value)
    for key in ("name", "type", "machine", "firmware", "secure_boot", "memory_kib", "vcpus",
                "topology", "cpu_mode", "serial_log"):
        lines.append("%s: %s" % (key, summary.get(key)))
    for index, disk in enumerate(summary.get("disks") or []):
        lines.append("disk[%d]: %s bus=%s format=%s source=%s"
                     % (index, disk["dev"], disk["bus"], disk["format"], disk["source"]))
    for index, nic in enumerate(summary.get("nics") or []):
        lines.append("nic[%d]: type=%s network=%s mac=%s model=%s"
                     % (index, nic["type"], nic["network"], nic["mac"] or "(libvirt assigns)", nic["model"]))
    return "\n".join(lines) + "\n"


def interface_macs(domain_xml):
    """MAC addresses of a domain's interfaces, in order (None where there is none)."""
    root = metadata_xml.parse_libvirt_xml(domain_xml)
    macs = []
    for iface in root.findall("devices/interface"):
        mac = iface.find("mac")
        macs.append(mac.get("address").lower() if mac is not None else None)
    return macs


def serial_log_path(domain_xml):
    """The file the first serial port's output lands in, or None."""
    root = metadata_xml.parse_libvirt_xml(domain_xml)
    for serial in root.findall("devices/serial"):
        log = serial.find("log")
        if log is not None and log.get("file"):
            return log.get("file"), log.get("append", "off") == "on"
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None and source.get("path"):
            return source.get("path"), source.get("append", "off") == "on"
    return None, False
