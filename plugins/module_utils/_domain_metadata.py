# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration state v2kvm keeps inside a libvirt domain's ``<metadata>``.

Shape (every child carries the v2kvm prefix so libvirt keeps it verbatim)::

    <v2kvm:migration xmlns:v2kvm="https://v2kvm.dev/xmlns/migration/1" version="1">
      <v2kvm:phase>defined</v2kvm:phase>
      <v2kvm:spec-digest>sha256:...</v2kvm:spec-digest>
      <v2kvm:config-digest>sha256:...</v2kvm:config-digest>
      <v2kvm:source type="ova" path="/data/web01.ova"/>
      <v2kvm:volumes>
        <v2kvm:volume path="/var/lib/libvirt/images/web01-0.qcow2" pool="default"
                      name="web01-0.qcow2" owned="yes"/>
      </v2kvm:volumes>
      <v2kvm:extra>{"wave": 3}</v2kvm:extra>
      <v2kvm:defined-at>2025-01-01T00:00:00Z</v2kvm:defined-at>
      <v2kvm:updated-at>2025-01-01T00:00:00Z</v2kvm:updated-at>
    </v2kvm:migration>

Timestamps are carried over unchanged unless the rest of the content changes, so a no-op
re-run produces byte-identical XML.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import parse_xml as parse_libvirt_xml

NAMESPACE = "https://v2kvm.dev/xmlns/migration/1"
PREFIX = "v2kvm"
FORMAT_VERSION = "1"

ET.register_namespace(PREFIX, NAMESPACE)

TIMESTAMP_KEYS = ("defined_at", "updated_at", "validated_at")
SOURCE_KEYS = ("type", "path", "size", "mtime_ns")


def _q(tag):
    return "{%s}%s" % (NAMESPACE, tag)


def digest_of(value):
    """sha256 of a JSON-able value in canonical form, as ``sha256:<hex>``."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_metadata(*, phase, spec_digest, config_digest, source, volumes, extra):
    """A metadata dict without timestamps (they are settled by merge_timestamps)."""
    return {
        "phase": phase,
        "spec_digest": spec_digest,
        "config_digest": config_digest,
        "source": {key: (source or {}).get(key) for key in SOURCE_KEYS},
        "volumes": [
            {"path": v["path"], "pool": v.get("pool"), "name": v.get("name"), "owned": bool(v.get("owned"))}
            for v in volumes
        ],
        "extra": dict(extra or {}),
    }


def content_of(meta):
    """The metadata without timestamps: what decides whether anything really changed."""
    if meta is None:
        return None
    return {k: v for k, v in meta.items() if k not in TIMESTAMP_KEYS}


def merge_timestamps(desired, previous, now=None):
    """Give ``desired`` its timestamps: keep the old ones when nothing else changed."""
    now = now or utc_now()
    merged = dict(desired)
    if previous is not None and content_of(previous) == content_of(desired):
        merged["defined_at"] = previous.get("defined_at") or now
        merged["updated_at"] = previous.get("updated_at") or now
        if previous.get("validated_at"):
            merged["validated_at"] = previous["validated_at"]
    else:
        merged["defined_at"] = (previous or {}).get("defined_at") or now
        merged["updated_at"] = now
        if desired.get("phase") == "validated" and (previous or {}).get("validated_at"):
            merged["validated_at"] = previous["validated_at"]
    return merged


def _text(parent, tag, value):
    child = ET.SubElement(parent, _q(tag))
    child.text = "" if value is None else str(value)
    return child


def to_element(meta):
    """The ``<v2kvm:migration>`` element for a metadata dict."""
    root = ET.Element(_q("migration"), {"version": FORMAT_VERSION})
    _text(root, "phase", meta.get("phase"))
    _text(root, "spec-digest", meta.get("spec_digest"))
    _text(root, "config-digest", meta.get("config_digest"))
    source = meta.get("source") or {}
    attrs = {k.replace("_", "-"): str(source[k]) for k in SOURCE_KEYS if source.get(k) is not None}
    ET.SubElement(root, _q("source"), attrs)
    volumes = ET.SubElement(root, _q("volumes"))
    for vol in meta.get("volumes") or []:
        attrs = {"path": vol["path"], "owned": "yes" if vol.get("owned") else "no"}
        for key in ("pool", "name"):
            if vol.get(key):
                attrs[key] = vol[key]
        ET.SubElement(volumes, _q("volume"), attrs)
    _text(root, "extra", json.dumps(meta.get("extra") or {}, sort_keys=True, separators=(",", ":")))
    for key in TIMESTAMP_KEYS:
        if meta.get(key):
            _text(root, key.replace("_", "-"), meta[key])
    return root


def to_xml(meta):
    """The element as a string, with its own namespace declaration (for virDomainSetMetadata)."""
    return ET.tostring(to_element(meta), encoding="unicode")


def to_plain_xml(meta):
    """The element without namespace, as virDomainSetMetadata wants it: libvirt puts it into the
    namespace given with the call, and refuses an element that already declares one."""
    root = to_element(meta)
    for elem in root.iter():
        elem.tag = elem.tag.split("}", 1)[-1]
    return ET.tostring(root, encoding="unicode")


def _child_text(elem, tag):
    child = elem.find(_q(tag))
    if child is None or child.text is None:
        return None
    return child.text


def _source_attr(source, key):
    value = source.get(key.replace("_", "-")) if source is not None else None
    if value is not None and key in ("size", "mtime_ns"):
        try:
            return int(value)
        except ValueError:
            return None
    return value


def source_fingerprint(source):
    """The spec's source plus size and mtime of its file when it is on this host: enough to tell later,
    without reading it, whether the source a finished migration came from has changed."""
    result = {key: (source or {}).get(key) for key in ("type", "path")}
    path = result.get("path")
    if path:
        try:
            stat = os.stat(path)
        except OSError:
            return result
        result.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    return result


def mark_validated(meta, now=None):
    """The metadata of a domain whose guest passed validation."""
    marked = dict(meta)
    marked["phase"] = "validated"
    marked["validated_at"] = now or utc_now()
    return marked


def from_element(elem):
    """Metadata dict from a ``<v2kvm:migration>`` element (as found in a domain's XML)."""
    source = elem.find(_q("source"))
    volumes = []
    vols = elem.find(_q("volumes"))
    for vol in (vols if vols is not None else []):
        volumes.append({
            "path": vol.get("path"),
            "pool": vol.get("pool"),
            "name": vol.get("name"),
            "owned": vol.get("owned") == "yes",
        })
    extra_text = _child_text(elem, "extra")
    try:
        extra = json.loads(extra_text) if extra_text else {}
    except ValueError:
        extra = {"unparsed": extra_text}
    meta = {
        "phase": _child_text(elem, "phase"),
        "spec_digest": _child_text(elem, "spec-digest"),
        "config_digest": _child_text(elem, "config-digest"),
        "source": {key: _source_attr(source, key) for key in SOURCE_KEYS},
        "volumes": volumes,
        "extra": extra,
    }
    for key in TIMESTAMP_KEYS:
        value = _child_text(elem, key.replace("_", "-"))
        if value is not None or key != "validated_at":  # only a validated migration has that one
            meta[key] = value
    return meta


def from_domain_xml(domain_xml):
    """Our metadata from a whole domain XML document, or None when the domain has none."""
    root = parse_libvirt_xml(domain_xml)
    elem = root.find("metadata/" + _q("migration"))
    return from_element(elem) if elem is not None else None
