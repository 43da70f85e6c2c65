"""The <v2kvm:migration> metadata: round trip, and timestamps that only move on real changes."""

import xml.etree.ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as md


def sample(phase="defined", extra=None, source=None):
    return md.new_metadata(
        phase=phase, spec_digest=md.digest_of({"name": "web01"}), config_digest="sha256:abc",
        source=source or {"type": "ova", "path": "/data/web01.ova"},
        volumes=[{"path": "/pool/web01-0.qcow2", "pool": "migrated", "name": "web01-0.qcow2", "owned": True},
                 {"path": "/other/data.raw", "pool": None, "name": None, "owned": False}],
        extra=extra or {"wave": 3},
    )


def test_round_trip_through_a_domain_document():
    meta = md.merge_timestamps(sample(), None, now="2025-01-01T00:00:00Z")
    domain = ET.Element("domain")
    ET.SubElement(domain, "metadata").append(md.to_element(meta))
    text = ET.tostring(domain, encoding="unicode")
    assert 'xmlns:v2kvm="https://v2kvm.dev/xmlns/migration/1"' in text and "<v2kvm:phase>" in text
    assert md.from_domain_xml(text) == meta


def test_domain_without_our_metadata_reads_as_none():
    assert md.from_domain_xml("<domain><metadata><other xmlns='urn:x'/></metadata></domain>") is None


def test_timestamps_kept_on_no_op_and_moved_on_change():
    first = md.merge_timestamps(sample(), None, now="2025-01-01T00:00:00Z")
    again = md.merge_timestamps(sample(), first, now="2025-02-02T00:00:00Z")
    assert again == first
    moved = md.merge_timestamps(sample(phase="validated"), first, now="2025-03-03T00:00:00Z")
    assert moved["defined_at"] == "2025-01-01T00:00:00Z" and moved["updated_at"] == "2025-03-03T00:00:00Z"


def test_digest_ignores_key_order():
    assert md.digest_of({"a": 1, "b": [1, 2]}) == md.digest_of({"b": [1, 2], "a": 1})
    assert md.digest_of({"a": 1}) != md.digest_of({"a": 2})


def test_validation_and_source_fingerprint_survive_a_round_trip(tmp_path):
    source = tmp_path / "web01.ova"
    source.write_bytes(b"x" * 1234)
    fingerprint = md.source_fingerprint({"type": "ova", "path": str(source)})
    assert fingerprint["size"] == 1234 and fingerprint["mtime_ns"] == source.stat().st_mtime_ns
    meta = md.merge_timestamps(sample(source=fingerprint), None, now="2025-01-01T00:00:00Z")
    validated = md.mark_validated(meta, now="2025-01-02T00:00:00Z")
    domain = ET.Element("domain")
    ET.SubElement(domain, "metadata").append(md.to_element(validated))
    back = md.from_domain_xml(ET.tostring(domain, encoding="unicode"))
    assert back["phase"] == "validated" and back["validated_at"] == "2025-01-02T00:00:00Z"
    assert back["source"] == fingerprint
    # A no-op redefinition keeps the validation; the plain form is what virDomainSetMetadata takes.
    assert md.merge_timestamps(dict(back), back)["validated_at"] == "2025-01-02T00:00:00Z"
    assert "xmlns" not in md.to_plain_xml(validated) and "<phase>validated</phase>" in md.to_plain_xml(validated)
