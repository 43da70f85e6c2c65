# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The normalized VM spec's rules (docs/vm-spec.md), the same for every source.

Every source reader (``_ova_source`` for OVA/OVF/VMDK, ``_vsphere_spec`` for vSphere) builds
its spec with these: ``name_source_vm`` / ``check_vm_name`` for names, ``guest_family`` for the
guest, and ``validate_spec`` last. ``domain_name_for`` gives a source VM's domain name before
the source is read. Nothing here reads a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SpecError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_DERIVED_STEM = 64 - 9  # a derived name ends in "-" and 8 hex digits
SOURCE_TYPES = ("ova", "ovf", "vmdk", "vsphere", "kvm")
FIRMWARES = ("bios", "uefi")
FAMILIES = ("linux", "windows", "other")
DISK_FORMATS = ("vmdk", "qcow2", "raw")
CONTROLLERS = ("scsi", "ide", "sata", "nvme", "virtio")
MANIFEST_ALGORITHMS = (None, "sha1", "sha256", "sha384", "sha512")

_WINDOWS_WORDS = ("windows", "microsoft", "win2k", "winxp", "winnet", "winvista", "winlonghorn")
_LINUX_WORDS = (
    "linux", "debian", "ubuntu", "rhel", "red hat", "redhat", "centos", "fedora", "sles", "suse",
    "opensuse", "oracle", "mandrake", "mandriva", "turbolinux", "asianux", "coreos", "photon",
    "amazonlinux", "rocky", "alma", "vmware photon", "miraclelinux", "pardus", "gentoo", "arch",
)


def check_vm_name(name: str, origin: str) -> str:
    """Return ``name`` if it satisfies the spec's name rule, else refuse naming the override."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            "VM name %r (from %s) does not match %s: it must start with a letter or digit and use only "
            "letters, digits, '_', '.', '+', '-' (at most 64 characters)" % (name, origin, NAME_PATTERN.pattern),
            "pass a valid name with the `name` option (for example name: %s); names are never rewritten silently"
            % (_suggest_name(name),),
        )
    return name


def name_source_vm(original, origin: str) -> tuple[str, str | None]:
    """``(domain name, original name or None)`` for a name found in a source.

    A name that satisfies the rule is kept. Any other ("Web Server 01", "Mönch", "db/01") gets a
    derived one: ASCII-folded, every other character as '-', plus 8 hex digits of the original's
    SHA256, so it is the same on every run and two originals never share it.
    """
    if isinstance(original, str) and NAME_PATTERN.fullmatch(original):
        return original, None
    if not isinstance(original, str) or not original.strip():
        raise SpecError(
            "the VM has no name in %s" % origin,
            "pass one with the `name` option (role variable migrate_vm_name)",
        )
    folded = unicodedata.normalize("NFKD", original).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9_.+]+", "-", folded).strip("-_.+")[:_DERIVED_STEM] or "vm"
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return "%s-%s" % (stem.rstrip("-_.+") or "vm", digest), original


def domain_name_for(source_name):
    """The domain name a source VM called ``source_name`` gets (for lookups before the source is read)."""
    if not isinstance(source_name, str) or not source_name.strip():
        return source_name
    return name_source_vm(source_name, "the lookup")[0]


def _suggest_name(name) -> str:
    suggestion = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(name or "")).strip("-_.+")[:64]
    return suggestion if NAME_PATTERN.fullmatch(suggestion) else "vm01"


def guest_family(os_id: str, description: str = "") -> str:
    """linux | windows | other, from a VMware guest id (debian11_64Guest) and/or a description."""
    text = ("%s %s" % (os_id or "", description or "")).lower()
    if any(word in text for word in _WINDOWS_WORDS) or re.match(r"^win", (os_id or "").lower()):
        return "windows"
    if any(word in text for word in _LINUX_WORDS):
        return "linux"
    return "other"


def _require(condition: bool, field: str, rule: str, value) -> None:
    if not condition:
        raise SpecError(
            "VM spec field %s is %r; it must be %s" % (field, value, rule),
            "fix the source or the value passed to the module (see docs/vm-spec.md)",
        )


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_abs_path(value) -> bool:
    return isinstance(value, str) and os.path.isabs(value)


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_hex(value, length: int) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[0-9a-f]{%d}" % length, value))


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value)


_MAC_RULE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_SPEC_RULES = (
    ("vcpus", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("cores_per_socket", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("memory_mib", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("firmware", lambda v: v in FIRMWARES, "bios or uefi"),
    ("secure_boot", lambda v: isinstance(v, bool), "true or false"),
    ("annotation", _is_text, "a string"),
    ("original_name", lambda v: v is None or _is_name(v), "null or the source's own name"),
)
_SOURCE_RULES = (
    ("type", lambda v: v in SOURCE_TYPES, "one of %s" % ", ".join(SOURCE_TYPES)),
    ("path", _is_abs_path, "an absolute path"),
    ("manifest", lambda v: v in MANIFEST_ALGORITHMS, "null, sha1, sha256, sha384 or sha512"),
)
_GUEST_RULES = (
    ("id", _is_text, "a string"),
    ("description", _is_text, "a string"),
    ("family", lambda v: v in FAMILIES, "linux, windows or other"),
)
_DISK_RULES = (
    ("id", _is_name, "a non-empty string"),
    ("file", _is_name, "a non-empty string"),
    ("offset", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("size", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("format", lambda v: v in DISK_FORMATS, "vmdk, qcow2 or raw"),
    ("subformat", lambda v: v is None or _is_name(v), "null or a VMDK create type"),
    ("compression", lambda v: v in (None, "gzip"), "null or gzip"),
    ("capacity_bytes", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("populated_bytes", lambda v: v is None or _is_int(v, 0), "null or an integer >= 0"),
    ("controller", lambda v: v in CONTROLLERS, "one of %s" % ", ".join(CONTROLLERS)),
    ("unit", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("sha256", lambda v: v is None or _is_hex(v, 64), "null or a SHA256 hex digest"),
    ("sha1", lambda v: v is None or _is_hex(v, 40), "null or a SHA1 hex digest"),
    ("sha384", lambda v: v is None or _is_hex(v, 96), "null or a SHA384 hex digest"),
    ("sha512", lambda v: v is None or _is_hex(v, 128), "null or a SHA512 hex digest"),
)
_NIC_RULES = (
    ("mac", lambda v: v is None or (_is_text(v) and bool(_MAC_RULE.fullmatch(v))),
     "null or a lower-case aa:bb:cc:dd:ee:ff MAC"),
    ("network", _is_text, "a string"),
    ("model", lambda v: v is None or _is_text(v), "null or a string"),
)


def _apply_rules(mapping, rules, prefix: str) -> None:
    _require(isinstance(mapping, dict), prefix.rstrip(".") or "spec", "a mapping", mapping)
    for field, rule, text in rules:
        _require(rule(mapping.get(field)), prefix + field, text, mapping.get(field))


def validate_spec(spec: dict) -> dict:
    """Check a spec against docs/vm-spec.md; returns it unchanged, raises SpecError on the first problem."""
    _apply_rules(spec, _SPEC_RULES, "")
    check_vm_name(spec.get("name"), "the spec")
    _apply_rules(spec.get("source"), _SOURCE_RULES, "source.")
    _apply_rules(spec.get("guest_os"), _GUEST_RULES, "guest_os.")
    vcpus, cores = spec["vcpus"], spec["cores_per_socket"]
    _require(vcpus % cores == 0, "cores_per_socket", "a divisor of vcpus (%d)" % vcpus, cores)
    _require(not spec["secure_boot"] or spec["firmware"] == "uefi", "secure_boot",
             "false unless firmware is uefi", spec["secure_boot"])
    disks = spec.get("disks")
    _require(isinstance(disks, list) and disks, "disks", "a non-empty list", disks)
    for index, disk in enumerate(disks):
        _apply_rules(disk, _DISK_RULES, "disks[%d]." % index)
        inside = disk.get("member") is not None
        path_ok = disk.get("path") is None if inside else _is_abs_path(disk.get("path"))
        _require(path_ok, "disks[%d].path" % index, "null inside an OVA, else an absolute path", disk.get("path"))
    ids = [disk["id"] for disk in disks]
    _require(len(set(ids)) == len(ids), "disks[].id", "unique", ids)
    nics = spec.get("nics")
    _require(isinstance(nics, list), "nics", "a list", nics)
    for index, nic in enumerate(nics):
        _apply_rules(nic, _NIC_RULES, "nics[%d]." % index)
    return spec
