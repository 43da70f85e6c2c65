"""migration_state over a play of many VMs: one listing of the target answers every finished
migration, anything else is asked of the target for that VM alone (plugins/action/migration_state.py).

Domains carrying real v2kvm metadata are defined in the test libvirt daemon (no disks: the look-up
reads metadata and stats the source files only). The proof that the target was asked once is what
`-vvv` shows a person: the number of times the module was started on it."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:6]


def _define_migrated(conn, name, source, phase="validated"):
    meta = meta_xml.new_metadata(phase="defined", spec_digest="s", config_digest="c",
                                 source=meta_xml.source_fingerprint({"type": "ova", "path": source}),
                                 volumes=[], extra={})
    meta = meta_xml.merge_timestamps(meta, None)
    if phase == "validated":
        meta = meta_xml.mark_validated(meta)
    xml = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
           "<os><type arch='x86_64'>hvm</type></os><metadata>%s</metadata></domain>"
           % (name, meta_xml.to_xml(meta)))
    return conn.defineXML(xml)


@pytest.fixture
def fleet(libvirt_daemon, tmp_path):
    """Four VMs: three migrated and validated, one never migrated."""
    conn = libvirt.open(libvirt_daemon.uri)
    sources, domains = {}, []
    for index in range(4):
        source = tmp_path / f"vm{index}.ova"
        source.write_bytes(b"ova %d" % index)
        sources[f"vm{index}"] = str(source)
    try:
        for index in range(3):
            domains.append(_define_migrated(conn, f"v2kvm-test-{RUN}-vm{index}", sources[f"vm{index}"]))
        yield libvirt_daemon.uri, sources
    finally:
        for dom in domains:
            dom.undefine()
        conn.close()


def _look_up(tmp_path, uri, sources, environment):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"vms": {"hosts": {
        host: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "source": path}
        for host, path in sources.items()}}}))
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"hosts": "vms", "gather_facts": False, "tasks": [
        {"name": "look up", "v2kvm.migrate.migration_state": {"uri": uri, "source_path": "{{ source }}"},
         "delegate_to": "localhost", "register": "state", "environment": environment},
        {"name": "show", "ansible.builtin.debug": {"msg": "STATE {{ inventory_hostname }} {{ state | to_json }}"}},
    ]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
               ANSIBLE_FORKS="4", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-vvv", "-i", str(inventory), str(play)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = {}
    for line in proc.stdout.splitlines():
        if '"msg": "STATE ' in line:
            _host, state = line.split('"msg": "STATE ', 1)[1].rstrip('"').split(" ", 1)
            states[_host] = json.loads(state.encode().decode("unicode_escape"))
    # -vvv shows every module start on the target as an EXEC of its AnsiballZ file.
    starts = [line for line in proc.stdout.splitlines()
              if "EXEC" in line and "AnsiballZ_migration_state.py" in line and "python" in line]
    return states, starts


# On the local connection the controller is the target and lists it in its own process; a task
# environment (which the module would run in) sends the listing through the module.
@pytest.mark.parametrize("environment, listing_starts", [({}, 0), ({"V2KVM_TEST_ENV": "1"}, 1)],
                         ids=["listed-in-the-controller", "listed-by-the-module"])
def test_one_listing_answers_every_finished_migration_and_the_rest_are_asked_alone(
        fleet, tmp_path, environment, listing_starts):
    uri, sources = fleet
    states, starts = _look_up(tmp_path, uri, sources, environment)
    assert sorted(states) == ["vm0", "vm1", "vm2", "vm3"]
    for host in ("vm0", "vm1", "vm2"):
        assert states[host]["complete"] is True, states[host]
        assert states[host]["name"] == f"v2kvm-test-{RUN}-{host}"
        assert states[host]["changed"] is False
    assert states["vm3"]["found"] is False and states["vm3"]["complete"] is False
    assert "no domain on this host was migrated from" in states["vm3"]["reason"]
    # At most one listing for the batch, one look-up of its own for the VM the listing did not settle.
    assert len(starts) == listing_starts + 1, "\n".join(starts)

    # A changed source is not taken from the listing: that VM asks the target and hears why.
    os.utime(sources["vm1"], ns=(1, 1))
    states, starts = _look_up(tmp_path, uri, sources, environment)
    assert states["vm1"]["complete"] is False
    assert states["vm1"]["source_changes"] == ["modified since the migration"]
    assert [states[host]["complete"] for host in ("vm0", "vm2")] == [True, True]
    assert len(starts) == listing_starts + 2, "\n".join(starts)
