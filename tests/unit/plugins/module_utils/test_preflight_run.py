"""The preflight module's entry (_preflight_rules.run) against libvirt's in-process test driver: the target's
free space and domain names feed the rules, and the module fails on a critical finding when asked to."""

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_room import free_bytes  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._preflight_rules import run  # noqa: E402
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

URI = "test:///default"


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule({"mode": "cold", "target_path": None, "uri": None, "existing_names": [],
                                  "fail_on_critical": True}, **options)


@pytest.fixture
def conn():
    # Holding a connection keeps the test driver's state for the connections run() opens and closes.
    c = libvirt.open(URI)
    defined = []
    yield c, defined
    for name in defined:
        c.lookupByName(name).undefine()
    c.close()


def define_migrated(conn, name, source):
    c, defined = conn
    meta = meta_xml.new_metadata(phase="defined", spec_digest="d", config_digest="c", source=source, volumes=[],
                                 extra={})
    c.defineXML("<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os>"
                "<metadata>%s</metadata></domain>" % (name, meta_xml.to_xml(meta)))
    defined.append(name)


def spec(name, path, capacity=1024):
    return {"name": name, "source": {"type": "ova", "path": path},
            "disks": [{"id": "disk1", "capacity_bytes": capacity}]}


def test_the_unfinished_domain_of_this_same_source_is_no_name_conflict(conn, tmp_path):
    source = str(tmp_path / "web01.ova")
    define_migrated(conn, "web01", {"type": "ova", "path": source})
    result = run(FakeModule(spec=spec("web01", source), uri=URI))
    assert result == {"changed": False, "findings": [], "summary": {"critical": 0, "warning": 0, "info": 0},
                      "blocked": False, "target_free_bytes": None}
    # Another source of the same name does clash, and a critical finding fails the module.
    with pytest.raises(Failed) as failed:
        run(FakeModule(spec=spec("web01", str(tmp_path / "other.ova")), uri=URI))
    result = failed.value.result
    assert result["msg"].startswith("pre-flight of web01 found 1 critical problem(s): a domain named web01 already "
                                    "exists on the target. Fix: ")
    assert result["blocked"] is True and [f["rule"] for f in result["findings"]] == ["name_conflict"]


def test_existing_names_and_the_targets_domains_both_count(conn, tmp_path):
    path = str(tmp_path / "x.ova")
    result = run(FakeModule(spec=spec("test", path), uri=URI, fail_on_critical=False))
    assert result["blocked"] is True and result["findings"][0]["rule"] == "name_conflict"
    result = run(FakeModule(spec=spec("app01", path), existing_names=["app01"], fail_on_critical=False))
    assert result["summary"]["critical"] == 1


def test_disks_are_compared_with_the_free_space_of_the_nearest_existing_parent(tmp_path):
    target = str(tmp_path / "pool-not-made-yet")
    free = free_bytes(str(tmp_path))
    result = run(FakeModule(spec=spec("app01", None, capacity=1024), target_path=target))
    assert result["target_free_bytes"] == pytest.approx(free, rel=0.01) and result["findings"] == []
    result = run(FakeModule(spec=spec("app01", None, capacity=1 << 60), target_path=target, fail_on_critical=False))
    assert [f["rule"] for f in result["findings"]] == ["target_space"]


def test_an_unreachable_target_fails_naming_the_fix():
    with pytest.raises(Failed) as failed:
        run(FakeModule(spec=spec("app01", None), uri="nosuchdriver:///system"))
    assert failed.value.result["msg"].startswith("cannot open libvirt URI nosuchdriver:///system")
