"""Every example a user would paste from README.md and docs/*.md, executed.

The blocks are taken out of the Markdown by their marker (``<!-- example: NAME -->``, see
tests/rig/doc_examples.py), so an edit that breaks an example fails ``make test``. Where an example names
things of the reader's site (a KVM host kvm01, /exports/web01.ova, a vCenter), the test gives exactly
those values the ones of the test rig, in the parsed structure or with extra variables (the highest
precedence), and says so at the place it does it; everything else runs as written.

A fenced block that is neither marked nor listed in UNTESTED (with the reason) fails the first test:
a new example gets a marker and a test here (the examples of docs/ci.md, docs/troubleshooting.md and
docs/awx.md, which share real runs, are in test_doc_examples_ops.py).
"""

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from urllib.parse import unquote

import pytest
import yaml
from rig.doc_examples import REPO, blocks, doc_paths, example

pytestmark = pytest.mark.integration

BIN = os.path.dirname(sys.executable)
COLLECTIONS = os.path.join(REPO, ".work", "collections")
RECORDER = os.path.join(REPO, "tests", "rig", "callback_plugins")
RUN = uuid.uuid4().hex[:6]

# Blocks that are not executed here, by (doc, first line), and why.
UNTESTED = {
    ("README.md", "make demo    # the main job: a real migration of four demo appliances into libvirt"):
        "the project's own entry points: `make test` runs this suite, `make demo` is scripts/demo.sh",
    ("README.md", "ansible-playbook -i playbooks/inventories/demo.yml playbooks/migrate.yml -e v2kvm_demo_dir=..."):
        "what `make demo` runs (scripts/demo.sh), shown with its folder left out",
}


def ansible_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_FORKS": "4"})
    env.update(extra)
    return env


def run(cmd, cwd, *, env=None, timeout=900):
    return subprocess.run(cmd, cwd=cwd, env=env or ansible_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def recorded_run(cmd, cwd, **env):
    """Run an ansible-playbook command line with the test recorder: (process, {"results", "stats"})."""
    fd, record = tempfile.mkstemp(prefix="v2kvm-record-", suffix=".json")
    os.close(fd)
    try:
        proc = run(cmd, cwd, env=ansible_env(ANSIBLE_CALLBACK_PLUGINS=RECORDER, ANSIBLE_CALLBACKS_ENABLED="test_record",
                                             V2KVM_TEST_RECORD=record, **env))
        with open(record) as handle:
            text = handle.read()
    finally:
        os.unlink(record)
    return proc, (json.loads(text) if text else {"results": [], "stats": {}})


def command_line(block):
    """The block's one command, split as the shell would, with the venv's ansible-* first on PATH."""
    lines = [line for line in block.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) == 1, f"{block.doc}:{block.line}: expected one command, found {lines}"
    return shlex.split(lines[0])


# -- every block is tested or says why not -----------------------------------------------------------------

def test_every_fenced_block_is_marked_or_explained():
    unexplained, marked = [], []
    for doc in doc_paths():
        for block in blocks(doc):
            if block.name:
                marked.append((doc, block.name))
            elif (doc, block.first_line) not in UNTESTED:
                unexplained.append(f"{doc}:{block.line}: {block.first_line[:70]!r}")
    assert not unexplained, ("fenced blocks without an '<!-- example: NAME -->' marker (add one and a test in "
                             "tests/integration/test_doc_examples.py, or list the block in UNTESTED with the "
                             "reason):\n" + "\n".join(unexplained))
    # A marker no test names is a promise nobody keeps.
    tests_text = ""
    for root, _dirs, files in os.walk(os.path.join(REPO, "tests")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as handle:
                    tests_text += handle.read()
    unused = [f"{doc}: {name}" for doc, name in marked if f'"{name}"' not in tests_text]
    assert not unused, "examples marked in the docs that no test runs:\n" + "\n".join(unused)
    for doc, first_line in UNTESTED:
        assert any(block.first_line == first_line for block in blocks(doc)), \
            f"UNTESTED names a block {doc} no longer has: {first_line!r}"


# -- README: Using it on your fleet ----------------------------------------------------------------------

@pytest.fixture
def fleet_dir(tmp_path):
    """A folder holding the README's inventory.yml, as the reader saves it."""
    block = example("README.md", "fleet-inventory")
    first = block.text.splitlines()[0]
    assert first == "# inventory.yml", f"the README names the inventory file in its first line: {first!r}"
    (tmp_path / "inventory.yml").write_text(block.text)
    return tmp_path


def test_readme_inventory_parses_as_documented(fleet_dir):
    proc = run([os.path.join(BIN, "ansible-inventory"), "-i", "inventory.yml", "--list"], fleet_dir)
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    assert sorted(inventory["migrate"]["hosts"]) == ["db01", "web01"]
    web01 = inventory["_meta"]["hostvars"]["web01"]
    assert web01["migrate_vm_source_path"] == "/exports/web01.ova"
    assert web01["migrate_vm_target_host"] == "kvm01" and web01["ansible_connection"] == "local"
    assert web01["migrate_vm_network_map"] == {"VM Network": "default"}
    assert inventory["_meta"]["hostvars"]["db01"]["migrate_vm_source_path"].endswith(".ovf")


def site_overrides(tmp_path, appliances, name):
    """Extra variables standing in for the reader's site: kvm01 (and kvm02) are this machine (local
    connection, the venv's Python, which has libvirt-python) and web01's export is a copy of the demo BIOS
    appliance (a copy, so no finished migration of the cached appliance is found); the domain gets a name
    of this run so nothing of anybody else's is touched."""
    ova = shutil.copy(appliances["demo-bios"], tmp_path / "web01.ova")
    return ["-e", json.dumps({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                              "migrate_vm_source_path": str(ova), "migrate_vm_name": name})]


def test_readme_fleet_command_runs_the_role_in_check_mode(libvirt_daemon, appliances, fleet_dir):
    import libvirt

    cmd = command_line(example("README.md", "fleet-run"))
    assert cmd[:3] == ["ansible-playbook", "-i", "inventory.yml"], cmd
    name = f"v2kvm-test-{RUN}-fleet"
    cmd = [os.path.join(BIN, cmd[0]), *cmd[1:], "--check", *site_overrides(fleet_dir, appliances, name)]
    proc, record = recorded_run(cmd, fleet_dir)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert list(record["stats"]) == ["web01"], record["stats"]  # --limit web01
    assert record["stats"]["web01"]["failures"] == 0
    assert "[web01 -> kvm01]" in output, "the heavy work is delegated to migrate_vm_target_host"
    spec = next(r for r in record["results"] if r["task"] == "Read the source VM description")["result"]["spec"]
    assert spec["source"]["type"] == "ova" and spec["name"] == name
    # Check mode: nothing was made on the target.
    conn = libvirt.open(libvirt_daemon.uri)
    try:
        assert name not in [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


@pytest.fixture
def test_pool(libvirt_daemon, tmp_path):
    """A directory pool of this run on the test daemon (placement only offers hosts that have the pool)."""
    import libvirt
    from rig.libvirt_cleanup import remove_pool

    name, path = f"v2kvm-test-{RUN}-docs", tmp_path / "pool"
    path.mkdir()
    conn = libvirt.open(libvirt_daemon.uri)
    pool = conn.storagePoolCreateXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>", 0)
    try:
        yield name
    finally:
        remove_pool(conn, pool.name())
        conn.close()


def test_readme_candidate_hosts_place_the_vm_on_the_host_not_in_maintenance(libvirt_daemon, appliances, fleet_dir,
                                                                            test_pool):
    candidates = yaml.safe_load(example("README.md", "candidate-hosts").text)
    hosts = candidates["migrate_vm_candidate_hosts"]
    assert [h["name"] for h in hosts] == ["kvm01", "kvm02"] and hosts[1].get("maintenance") is True
    for host in hosts:  # kvm01 and kvm02 are both the test daemon
        assert host["uri"].startswith("qemu+ssh://"), host
        host["uri"] = libvirt_daemon.uri
    (fleet_dir / "candidates.yml").write_text(yaml.safe_dump(candidates))
    name = f"v2kvm-test-{RUN}-placed"
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", "inventory.yml", "v2kvm.migrate.migrate", "--limit", "web01",
           "--check", "-e", "@candidates.yml", *site_overrides(fleet_dir, appliances, name),
           "-e", "migrate_vm_placement_dry_run=true", "-e", "migrate_vm_storage_pool=" + test_pool]
    proc, record = recorded_run(cmd, fleet_dir)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    placed = [r["result"]["ansible_facts"]["migrate_vm_placed_host"] for r in record["results"]
              if r["task"] == "Take this VM's slot"]
    assert placed == ["kvm01"], record["results"][-5:]


# -- README: module_defaults with the action groups ------------------------------------------------------

def module_defaults_play(uri, ova):
    """The README's play with kvm01's URI and the export path set to the rig's."""
    text = example("README.md", "module-defaults").text
    play = yaml.safe_load(text)[0]
    defaults = play["module_defaults"]
    assert list(defaults) == ["group/v2kvm.migrate.libvirt"], defaults
    assert defaults["group/v2kvm.migrate.libvirt"]["uri"] == "qemu+ssh://root@kvm01/system"
    defaults["group/v2kvm.migrate.libvirt"]["uri"] = uri
    ova_task = next(t for t in play["tasks"] if "v2kvm.migrate.ova_info" in t)
    ova_task["v2kvm.migrate.ova_info"]["path"] = ova
    for task in play["tasks"]:
        task["register"] = "result_%d" % play["tasks"].index(task)
    return [play]


@pytest.mark.parametrize("uri", ["daemon", "test:///default"])
def test_readme_module_defaults_reach_every_module_of_the_group(libvirt_daemon, appliances, tmp_path, uri):
    # The test daemon, and libvirt's built-in test driver: a URI no module defaults to, so a result
    # naming it proves module_defaults set it.
    uri = libvirt_daemon.uri if uri == "daemon" else uri
    (tmp_path / "check.yml").write_text(yaml.safe_dump(module_defaults_play(uri, appliances["demo-bios"])))
    proc, record = recorded_run([os.path.join(BIN, "ansible-playbook"), "check.yml"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    results = {r["task"]: r for r in record["results"]}
    assert record["stats"]["localhost"]["failures"] == 0 and len(results) == 4, results
    facts = results["Facts of the KVM host (CPUs, memory, pools, domains, KVM or TCG)"]["result"]
    assert facts["host"]["uri"] == uri
    assert results["Migrations already finished there"]["status"] == "ok"
    pool = results["The pool the disks go to (check mode creates nothing)"]
    assert pool["status"] == "ok", pool
    spec = results["The export (ova_info has no uri; the libvirt defaults leave it alone)"]["result"]["spec"]
    assert spec["name"] == "demo-bios"


def test_removed_all_modules_group_fails_at_once_naming_it(tmp_path):
    # The former group/v2kvm.migrate.migrate held modules without `uri`; a play still naming it stops before
    # any task runs instead of failing halfway with "Unsupported parameters".
    play = module_defaults_play("test:///default", "/nonexistent.ova")
    play[0]["module_defaults"] = {"group/v2kvm.migrate.migrate": {"uri": "test:///default"}}
    (tmp_path / "old.yml").write_text(yaml.safe_dump(play))
    proc = run([os.path.join(BIN, "ansible-playbook"), "old.yml"], tmp_path)
    assert proc.returncode != 0 and "v2kvm.migrate.migrate" in proc.stdout + proc.stderr
    assert "TASK [" not in proc.stdout


# -- docs/vsphere.md: the vsphere group against vsphere-sim ---------------------------------------------------

@pytest.fixture
def vsphere_sim(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tests", "integration", "vsphere"))
    import sim_rig

    try:
        binary = sim_rig.build_simulator()
    except sim_rig.SimUnavailable as exc:
        pytest.skip(str(exc))
    sim = sim_rig.start_simulator(binary, "-api-version", "8.0.0.0", "-username", "migrator@vsphere.local",
                                  "-password", "doc-" + RUN)
    # The simulator prints its URL with the user name URL-encoded (migrator%40vsphere.local).
    sim.username, sim.password = unquote(sim.username), unquote(sim.password)
    si = sim.connect()
    folders = sim_rig.datastore_dirs(si)
    try:
        raw = tmp_path / "disk.raw"
        with open(raw, "wb") as handle:
            handle.truncate(1 << 20)
        dsp, _flat, size = sim_rig.write_esxi_disk(si, "web01", "web01", str(raw))
        sim_rig.create_vm(si, "web01", [sim_rig.disk_spec(dsp, size, key=2000)])
        yield sim
    finally:
        sim_rig.disconnect(si)
        sim.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def test_vsphere_module_defaults_example(vsphere_sim, tmp_path):
    play = yaml.safe_load(example("docs/vsphere.md", "vsphere-module-defaults").text)
    connection = play[0]["module_defaults"]["group/v2kvm.migrate.vsphere"]
    vaulted = "{{ vault_vcenter_password }}"
    assert connection["password"] == vaulted, "the password comes from a vault variable"  # noqa: S105
    # vcenter.example.com is the simulator, whose certificate is self-signed.
    connection.update(hostname=vsphere_sim.host, port=vsphere_sim.port, validate_certs=False)
    assert connection["username"] == vsphere_sim.username
    (tmp_path / "vm.yml").write_text(yaml.safe_dump(play))
    proc, record = recorded_run([os.path.join(BIN, "ansible-playbook"), "vm.yml",
                                 "-e", "vault_vcenter_password=" + vsphere_sim.password], tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert vsphere_sim.password not in output
    specs = [r["result"]["spec"] for r in record["results"] if "spec" in r["result"]]
    assert [s["name"] for s in specs] == ["web01"] and specs[0]["source"]["type"] == "vsphere"


# -- docs/dashboard.md and docs/web-dashboard.md: ansible.cfg as written ---------------------------------------

PLAY = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n"


def run_with_cfg(tmp_path, cfg_text):
    (tmp_path / "ansible.cfg").write_text(cfg_text)
    (tmp_path / "play.yml").write_text(PLAY)
    env = ansible_env(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"))
    return run([os.path.join(BIN, "ansible-playbook"), "play.yml"], tmp_path, env=env)


def test_dashboard_as_stdout_callback_cfg(tmp_path):
    proc = run_with_cfg(tmp_path, example("docs/dashboard.md", "dashboard-stdout-cfg").text)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # No terminal: the dashboard's line mode owns stdout, ending with its metrics line.
    assert "PLAY RECAP" not in proc.stdout and re.search(r"^VMs 1: ", proc.stdout, re.M), proc.stdout


def test_dashboard_reports_cfg_writes_the_three_reports(tmp_path):
    proc = run_with_cfg(tmp_path, example("docs/dashboard.md", "dashboard-reports-cfg").text)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PLAY RECAP" in proc.stdout  # the default stdout callback stays
    events = [json.loads(line) for line in (tmp_path / "run-events.jsonl").read_text().splitlines()]
    assert events and json.loads((tmp_path / "run-summary.json").read_text())
    assert (tmp_path / "run-junit.xml").read_text().lstrip().startswith("<?xml")


def test_web_dashboard_cfg_is_read_as_written(tmp_path):
    text = example("docs/web-dashboard.md", "web-embedded-cfg").text
    (tmp_path / "ansible.cfg").write_text(text)
    env = ansible_env(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"))
    dump = run([os.path.join(BIN, "ansible-config"), "dump", "--only-changed", "-t", "all"], tmp_path, env=env)
    assert dump.returncode == 0, dump.stderr
    assert re.search(r"^CALLBACKS_ENABLED\(.*\) = \['v2kvm\.migrate\.web'\]$", dump.stdout, re.M), dump.stdout
    options = run([os.path.join(BIN, "ansible-config"), "dump", "--only-changed", "-t", "callback",
                   "v2kvm.migrate.web"], tmp_path, env=env)
    values = dict(re.findall(r"^(\w+)\(.*ansible\.cfg\) = (.*)$", options.stdout, re.M))
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))  # as ansible-core reads it
    parser.read_string(text)
    expected = dict(parser["callback_v2kvm_web"])
    assert set(values) == set(expected) and expected, (values, expected)
    for key, value in expected.items():
        assert float(values[key]) == float(value), (key, values[key], value)


def test_web_dashboard_standalone_command_uses_real_options(tmp_path):
    text = example("docs/web-dashboard.md", "web-standalone").text
    helped = run([sys.executable, os.path.join(REPO, "scripts", "web_dashboard.py"), "--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
    unknown = sorted(f for f in flags if f not in helped.stdout)
    assert flags and not unknown, unknown
    doc = run([os.path.join(BIN, "ansible-doc"), "-t", "callback", "--json", "v2kvm.migrate.web"], tmp_path)
    options = json.loads(doc.stdout)["v2kvm.migrate.web"]["doc"]["options"]
    env_names = {env["name"] for option in options.values() for env in option.get("env", [])}
    for name in set(re.findall(r"\b(V2KVM_WEB_\w+)=", text)):
        assert name in env_names, (name, sorted(env_names))
    assert "ANSIBLE_CALLBACKS_ENABLED=v2kvm.migrate.web" in text


# -- docs/vm-spec.md: the spec contract ----------------------------------------------------------------------

def _shape(value):
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_vm_spec_doc_is_a_valid_spec_shaped_like_ova_info_output(appliances):
    from ansible_collections.v2kvm.migrate.plugins.module_utils._ova_source import read_source_spec
    from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import validate_spec

    documented = yaml.safe_load(example("docs/vm-spec.md", "vm-spec").text)
    validate_spec(documented)
    spec, _warnings = read_source_spec(appliances["demo-bios"])
    assert _shape(documented) == _shape(spec)
