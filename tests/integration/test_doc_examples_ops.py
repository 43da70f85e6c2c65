"""The examples of docs/ci.md, docs/troubleshooting.md and docs/awx.md, executed.

Two real runs are shared by the tests of this file (module-scoped fixtures):

- ``pipelines``: the GitLab job of ci.md runs its ``script:`` and ``after_script:`` as written, in a
  checkout-like folder (the project's playbooks/migrate.yml, inventories/wave1.yml, collections/
  requirements.yml) with the job's variables: a real migration of one demo OVA (web01) next to one that
  fails validation (db01, the broken demo appliance) and one whose source is missing (app01). Then the
  GitHub workflow's steps run the same way on the same inventory (``if: always()`` honoured), which finds
  web01 migrated and skips it.
- ``awx_job``: what an AWX job does with the vCenter credential type of awx.md against vsphere-sim: the
  injectors rendered as AWX renders them (env and extra vars), the inventory source file of awx.md, the
  KVM hosts' group_vars of awx.md, playbooks/migrate.yml, AWX's JOB_ID, and the web companion settings
  pointing at a real standalone web dashboard.

Where an example names the reader's site (kvm01, the vCenter, the dashboard's URL), the test gives those
names the rig's values and says so where it does it.
"""

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from types import SimpleNamespace
from xml.etree import ElementTree  # noqa: S405 - reads the JUnit file this test's own run wrote

import jinja2
import pytest
import yaml
from rig.doc_examples import REPO, example

pytestmark = pytest.mark.integration

libvirt = pytest.importorskip("libvirt")

BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:6]
CLOCK = r"\d\d:\d\d:\d\d"


def clean_env(**extra):
    """The caller's environment without Ansible or dashboard settings, the venv's tools first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "V2KVM_"))}
    env.update({"PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "ANSIBLE_NOCOLOR": "1"})
    env.update(extra)
    return env


def bash(script, cwd, env, timeout=900):
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def copy_playbook(project):
    (project / "playbooks").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "playbooks", "migrate.yml"), project / "playbooks" / "migrate.yml")


# -- ci.md: the pipelines ------------------------------------------------------------------------------------

WAVE1_POOL = f"v2kvm-test-ci-{RUN}"
WAVE1_POOL_PATH = f"/var/lib/libvirt/images/{WAVE1_POOL}"
WAVE1_NAMES = {host: f"v2kvm-test-ci-{RUN}-{host}" for host in ("web01", "db01", "app01")}


def ci_project(root, appliances):
    """A checkout of the reader's project: the collection's playbook, inventories/wave1.yml (three VMs on this
    machine's daemon, domain names of this run) and collections/requirements.yml naming v2kvm.migrate (here
    the checkout as a source folder: the runner cannot reach Galaxy)."""
    copy_playbook(root)
    (root / "inventories").mkdir()
    (root / "inventories" / "wave1.yml").write_text(yaml.safe_dump({"migrate": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "migrate_vm_storage_pool": WAVE1_POOL, "migrate_vm_storage_pool_path": WAVE1_POOL_PATH,
                 "migrate_vm_network_map": {"VM Network": "user"}, "migrate_vm_boot_timeout": 300},
        "hosts": {
            "web01": {"migrate_vm_source_path": appliances["demo-bios"], "migrate_vm_name": WAVE1_NAMES["web01"]},
            "db01": {"migrate_vm_source_path": appliances["demo-broken"], "migrate_vm_name": WAVE1_NAMES["db01"]},
            "app01": {"migrate_vm_source_path": str(root / "missing.ova"), "migrate_vm_name": WAVE1_NAMES["app01"]},
        }}}))
    (root / "collections").mkdir()
    (root / "collections" / "requirements.yml").write_text(yaml.safe_dump(
        {"collections": [{"name": REPO, "type": "dir"}]}))
    return root


def runner_env(root, variables, **ci):
    """The job's environment: the pipeline's variables as written, what the CI service sets, and the runner's
    own collections path (in the test's folder, so nothing lands in the home directory)."""
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=str(root.parent / (root.name + "-runner-collections")), CI="true", **ci)
    env.update({name: str(value) for name, value in variables.items()})
    return env


def github_expressions(text, values):
    def substitute(match):
        assert match.group(1) in values, f"ci.md's workflow uses ${{{{ {match.group(1)} }}}}, unknown to the test"
        return values[match.group(1)]

    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", substitute, text)


@pytest.fixture(scope="module")
def pipelines(libvirt_daemon, appliances, tmp_path_factory):
    from rig.libvirt_cleanup import remove_migration

    result = SimpleNamespace()
    try:
        # GitLab: the script lines in one shell that stops at the first failure, after_script in another.
        gitlab = yaml.safe_load(example("docs/ci.md", "ci-gitlab").text)["migrate-wave-1"]
        for line in gitlab["script"] + gitlab["after_script"]:
            assert isinstance(line, str), f"GitLab wants shell lines, the YAML gives {line!r}"
        root = ci_project(tmp_path_factory.mktemp("gitlab") / "project", appliances)
        env = runner_env(root, gitlab["variables"], GITLAB_CI="true")
        result.gitlab, result.gitlab_root = gitlab, root
        result.script = bash("\n".join(gitlab["script"]), root, env)
        result.after_script = bash("\n".join(gitlab["after_script"]), root, env)

        # GitHub: the steps in order; a failed step skips the later ones except those with if: always().
        # The workflow is dispatched with a --limit of two VMs; its secrets are not set (empty), as the
        # sources are OVAs.
        workflow = yaml.safe_load(example("docs/ci.md", "ci-github").text)
        job = workflow["jobs"]["migrate"]
        values = {"inputs.limit": "web01:app01", "secrets.VMWARE_HOST": "", "secrets.VMWARE_USER": "",
                  "secrets.VMWARE_PASSWORD": ""}
        root = ci_project(tmp_path_factory.mktemp("github") / "project", appliances)
        summary = root.parent / "step-summary.md"
        summary.write_text("")
        env = runner_env(root, {k: github_expressions(str(v), values) for k, v in job["env"].items()},
                         GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
        result.workflow, result.github_root, result.steps, failed = workflow, root, {}, False
        for step in job["steps"]:
            name = step.get("name", step.get("uses"))
            if failed and step.get("if") != "always()":
                result.steps[name] = None
            elif "run" in step:
                proc = bash(github_expressions(step["run"], values), root, env)
                result.steps[name] = proc
                failed = failed or proc.returncode != 0
            else:
                result.steps[name] = step["uses"]
        result.step_summary = summary.read_text()
        conn = libvirt.open(libvirt_daemon.uri)
        try:
            result.web01_active = conn.lookupByName(WAVE1_NAMES["web01"]).isActive()
        finally:
            conn.close()
        yield result
    finally:
        remove_migration(libvirt_daemon.uri, list(WAVE1_NAMES.values()), WAVE1_POOL, WAVE1_POOL_PATH)


def test_gitlab_job_fails_with_rc_2_and_keeps_its_reports(pipelines):
    gitlab, root, proc = pipelines.gitlab, pipelines.gitlab_root, pipelines.script
    context = proc.stdout[-4000:] + proc.stderr[-2000:]
    # One VM failed validation and one has no source: ansible-playbook's 2, the job fails.
    assert proc.returncode == 2, context
    assert "v2kvm.migrate:" in proc.stdout and "was installed successfully" in proc.stdout, context
    # The reports the job names, relative to the checkout, and the artifacts that keep them.
    assert gitlab["artifacts"]["when"] == "always" and gitlab["artifacts"]["paths"] == ["reports/"]
    junit_path = gitlab["artifacts"]["reports"]["junit"]
    assert junit_path == gitlab["variables"]["V2KVM_DASHBOARD_JUNIT_FILE"]
    suite = ElementTree.parse(root / junit_path).getroot().find("testsuite")  # noqa: S314
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert sorted(cases) == ["app01", "db01", "web01"] and suite.get("failures") == "2", ElementTree.tostring(suite)
    assert cases["web01"].find("failure") is None
    assert "validate failed" in cases["db01"].find("failure").get("message")
    assert "source info failed" in cases["app01"].find("failure").get("message")
    summary = json.loads((root / gitlab["variables"]["V2KVM_DASHBOARD_SUMMARY_FILE"]).read_text())
    statuses = {vm["host"]: vm["status"] for vm in summary["vms"]}
    assert statuses == {"web01": "succeeded", "db01": "failed", "app01": "failed"}, statuses
    events = [json.loads(line)
              for line in (root / gitlab["variables"]["V2KVM_DASHBOARD_EVENTS_FILE"]).read_text().splitlines()]
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    # after_script lists the failed VMs with their errors.
    listed = pipelines.after_script.stdout.splitlines()
    assert pipelines.after_script.returncode == 0, pipelines.after_script.stderr
    assert sorted(line.split(":")[0] for line in listed) == ["app01", "db01"], listed
    # The dashboard owned the log, in line mode: no escape codes, no Ansible recap.
    assert "\x1b" not in proc.stdout and "PLAY RECAP" not in proc.stdout
    # The migrated guest runs on the target (seen after both pipelines).
    assert pipelines.web01_active


SHAPE_PARTS = {
    "HH:MM:SS": CLOCK,
    "<vm>": r"\S+",
    "<disk>": r"\S+",
    "<stage>": r".+?",
    "<task>": r".+?",
    "<error>": r".+",
    "<first line of the error>": r".+",
    "<pct>": r"\d+(\.\d)?",
    "<n>": r"\d+",
    "<done>": r"(\d+ B|\d+\.\d [KMGT]iB)",
    "<total>": r"(\d+ B|\d+\.\d [KMGT]iB)",
    "<bytes>": r"(\d+ B|\d+\.\d [KMGT]iB)",
    "<MB/s>": r"(\d+\.\d MB/s|-)",
    "<m:ss>": r"((\d+:)?\d+:\d\d|-)",
}


def shape_regex(shape):
    """One line of ci-line-shapes as a regular expression: placeholders, optional [parts], literal rest."""
    pattern = ""
    for part in re.split(r"(<[^>]+>|HH:MM:SS|\[|\])", shape):
        if part in SHAPE_PARTS:
            pattern += SHAPE_PARTS[part]
        elif part == "[":
            pattern += "(?:"
        elif part == "]":
            pattern += ")?"
        else:
            assert not part.startswith("<"), f"ci.md's line shapes use {part}, which the test does not know"
            pattern += re.escape(part)
    return re.compile(pattern + "$")


def test_ci_line_shapes_are_every_line_of_the_job_log(pipelines):
    shapes = [line for line in example("docs/ci.md", "ci-line-shapes").text.splitlines() if line.strip()]
    regexes = [shape_regex(shape) for shape in shapes]
    lines = pipelines.script.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if re.match(CLOCK + " ", line))  # after ansible-galaxy's lines
    used, unmatched = {shape: 0 for shape in shapes}, []
    for line in lines[first:]:
        shape = next((s for s, regex in zip(shapes, regexes) if regex.match(line)), None)
        if shape is None:
            unmatched.append(line)
        else:
            used[shape] += 1
    assert not unmatched, "job log lines of no documented shape:\n" + "\n".join(unmatched)
    assert all(used.values()), used
    assert lines[-1].startswith("VMs 3: 1 succeeded, 2 failed, 0 active, 0 pending"), lines[-3:]
    assert len([line for line in lines if " FAILED " in line]) >= 2  # `grep FAILED` finds both failures


def test_github_workflow_steps(pipelines):
    gitlab_vars, job = pipelines.gitlab["variables"], pipelines.workflow["jobs"]["migrate"]
    # The dashboard settings are those of the GitLab job (the table above them in ci.md).
    assert {k: str(v) for k, v in job["env"].items() if k in gitlab_vars} == \
        {k: str(v) for k, v in gitlab_vars.items()}
    trigger = pipelines.workflow.get("on", pipelines.workflow.get(True))  # YAML 1.1 reads a bare on as true
    assert trigger["workflow_dispatch"]["inputs"]["limit"]["default"] == "all"
    steps = pipelines.steps
    assert steps["Install the collection"].returncode == 0, steps["Install the collection"].stderr[-2000:]
    migrate = steps["Migrate"]
    assert migrate.returncode == 2, migrate.stdout[-3000:] + migrate.stderr[-2000:]
    # web01 was migrated by the GitLab job on the same target: found and skipped, not migrated again.
    assert re.search(CLOCK + r" web01 \u2714 up to date \(nothing changed\)", migrate.stdout), migrate.stdout
    assert "db01" not in migrate.stdout, "the --limit input picked web01 and app01"
    assert steps["Summary"].returncode == 0, steps["Summary"].stderr
    assert pipelines.step_summary.splitlines()[0] == "1 succeeded, 1 failed of 2", pipelines.step_summary
    assert re.match(r"- app01: source info failed: source \S+missing\.ova does not exist",
                    pipelines.step_summary.splitlines()[1]), pipelines.step_summary
    # The artifact step keeps reports/: it holds the three reports.
    assert steps["Keep the reports"] == "actions/upload-artifact@v4"
    assert sorted(os.listdir(pipelines.github_root / "reports")) == ["events.jsonl", "junit.xml", "summary.json"]


def test_ci_reading_the_reports(pipelines):
    block = example("docs/ci.md", "ci-read-reports").text
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 3, commands
    env = clean_env()
    outputs = []
    for command in commands:
        proc = bash(command, pipelines.gitlab_root, env)
        assert proc.returncode == 0, (command, proc.stderr)
        outputs.append(proc.stdout)
    rows = sorted(line.split("\t") for line in outputs[0].splitlines())
    assert [row[:3] for row in rows] == [["app01", "failed", "source info"], ["db01", "failed", "validate"],
                                         ["web01", "succeeded", "validate"]], rows
    assert all(float(row[3]) > 0 for row in rows)
    metrics = json.loads(outputs[1])
    assert (metrics["total"], metrics["succeeded"], metrics["failed"]) == (3, 1, 2)
    assert metrics["data_processed"] > 0 and metrics["average_throughput"] > 0
    samples = [json.loads(line) for line in outputs[2].splitlines()]
    assert samples and {(s["type"], s["host"]) for s in samples} == {("progress", "web01")}
    assert any(s["done"] == s["total"] > 0 for s in samples)


# -- troubleshooting.md --------------------------------------------------------------------------------------

def test_troubleshooting_failure_message_is_what_a_failed_validation_says(pipelines):
    text = " ".join(example("docs/troubleshooting.md", "troubleshooting-failure-message").text.split("\n")).strip()
    summary = json.loads((pipelines.gitlab_root / "reports" / "summary.json").read_text())
    error = next(vm["error"] for vm in summary["vms"] if vm["host"] == "db01")
    # The doc shows the demo's names (domain demo-broken in the pool v2kvm-demo); the kernel's clock differs.
    real = error.replace(WAVE1_NAMES["db01"], "demo-broken").replace(WAVE1_POOL, "v2kvm-demo")
    uptime = re.compile(r"\[\s*\d+\.\d+\]")
    assert uptime.sub("[T]", real) == uptime.sub("[T]", text), (real, text)


def test_troubleshooting_jq_lists_the_failed_vms(pipelines):
    command = example("docs/troubleshooting.md", "troubleshooting-failed-vms").text
    proc = bash(command, pipelines.gitlab_root / "reports", clean_env())
    assert proc.returncode == 0, proc.stderr
    rows = sorted(line.split("\t") for line in proc.stdout.splitlines())
    assert [row[:2] for row in rows] == [["app01", "source info"], ["db01", "validate"]], rows
    assert rows[1][2].startswith("validate failed: validation of " + WAVE1_NAMES["db01"])


def test_troubleshooting_removes_a_finished_vm(pipelines, tmp_path):
    # kvm01 is this machine (an inventory of the rig: local connection, the venv's Python; `su` for -b, as
    # the rig has no sudo); web01 is the domain the GitLab job migrated, named for this run.
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"kvm01": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "ansible_become_method": "su"}}}}))
    command = example("docs/troubleshooting.md", "troubleshooting-remove-vm").text.strip()
    assert command.count("name=web01 ") == 1, command
    cmd = shlex.split(command.replace("name=web01 ", "name=%s " % WAVE1_NAMES["web01"]))
    conn = libvirt.open("qemu:///system")
    try:
        volumes = conn.storagePoolLookupByName(WAVE1_POOL).listVolumes()
        assert WAVE1_NAMES["web01"] + "-disk0.qcow2" in volumes
        conn.lookupByName(WAVE1_NAMES["web01"])
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                              env=clean_env(ANSIBLE_INVENTORY=str(tmp_path / "hosts.yml"),
                                            ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections")))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "CHANGED" in proc.stdout
        assert WAVE1_NAMES["web01"] not in [d.name() for d in conn.listAllDomains()]
        pool = conn.storagePoolLookupByName(WAVE1_POOL)
        pool.refresh()
        assert WAVE1_NAMES["web01"] + "-disk0.qcow2" not in pool.listVolumes()
    finally:
        conn.close()


# -- awx.md: the vCenter credential type, the inventory source, the KVM hosts, the web companion -------------

AWX_POOL = f"v2kvm-test-awx-{RUN}"
AWX_POOL_PATH = f"/var/lib/libvirt/images/{AWX_POOL}"
AWX_VM = f"v2kvm-test-awx-{RUN}-web01"
JOB_ID = "4711"


def awx_template_names(text):
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))


def render_injectors(injectors, inputs):
    """The injectors as AWX renders them: every value a Jinja2 template over the credential's inputs, the
    result a string (a boolean input renders as True/False)."""
    def render(value):
        # Environment values, not HTML: AWX does not escape them either.
        environment = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701
        return environment.from_string(value).render(**inputs)

    return ({name: render(value) for name, value in injectors.get("env", {}).items()},
            {name: render(value) for name, value in injectors.get("extra_vars", {}).items()})


def doc_json(*args):
    proc = subprocess.run([os.path.join(BIN, "ansible-doc"), "--json", *args], capture_output=True, text=True,
                          env=clean_env(ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections")),
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[args[-1]]


def test_awx_credential_type_injects_what_the_collection_reads():
    inputs = yaml.safe_load(example("docs/awx.md", "awx-vcenter-credential-inputs").text)
    injectors_text = example("docs/awx.md", "awx-vcenter-credential-injectors").text
    injectors = yaml.safe_load(injectors_text)
    ids = [field["id"] for field in inputs["fields"]]
    assert set(inputs["required"]) <= set(ids)
    assert awx_template_names(injectors_text) == set(ids), "the injectors use every input, and only inputs"
    assert [f["id"] for f in inputs["fields"] if f.get("secret")] == ["password"]
    assert set(injectors) == {"env", "extra_vars"}
    # Every environment variable is one the inventory plugin reads (its options' env) and one the vSphere
    # modules fall back to (their doc: "Falls back to E(VMWARE_...)").
    plugin = doc_json("-t", "inventory", "v2kvm.migrate.vsphere")["doc"]["options"]
    plugin_env = {env["name"]: option for option, spec in plugin.items() for env in spec.get("env", [])}
    module = doc_json("v2kvm.migrate.vsphere_vm_info")["doc"]["options"]
    module_env = {name: option for option, spec in module.items()
                  for name in re.findall(r"E\((VMWARE_\w+)\)", " ".join(spec["description"]))}
    for name in injectors["env"]:
        assert name in plugin_env and name in module_env, (name, sorted(plugin_env), sorted(module_env))
    # Every extra variable is an option of the role, and together they cover what the role does not take
    # from the environment (port and certificate checking).
    role = doc_json("-t", "role", "v2kvm.migrate.migrate_vm")["entry_points"]["main"]["options"]
    assert set(injectors["extra_vars"]) <= set(role), sorted(role)
    assert set(injectors["extra_vars"]) == {"migrate_vm_vsphere_port", "migrate_vm_vsphere_validate_certs"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def web_dashboard(tmp_path_factory):
    """A standalone web dashboard (scripts/web_dashboard.py) on a free port, with its token."""
    folder = tmp_path_factory.mktemp("web")
    token, port = secrets.token_hex(16), free_port()
    log = open(folder / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "web_dashboard.py"), "--port", str(port),
                             "--history", str(folder / "history.sqlite3")],
                            env=dict(os.environ, V2KVM_WEB_TOKEN=token), stdout=subprocess.DEVNULL, stderr=log)
    url = "http://127.0.0.1:%d/" % port
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "healthz", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (folder / "server.log").read_text()[-2000:]
                time.sleep(0.1)
        yield SimpleNamespace(url=url, token=token)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def vcenter(tmp_path_factory):
    """vsphere-sim with a custom attribute `wave` and three VMs: the one wave 3 Linux VM, a Windows VM of wave 3
    and a Linux VM of wave 2 (the filters of awx.md keep only the first)."""
    sys.path.insert(0, os.path.join(REPO, "tests", "integration", "vsphere"))
    import sim_rig
    from pyVmomi import vim

    try:
        binary = sim_rig.build_simulator()
    except sim_rig.SimUnavailable as exc:
        pytest.skip(str(exc))
    password = "awx-" + secrets.token_hex(8)
    sim = sim_rig.start_simulator(binary, "-api-version", "8.0.0.0", "-username", "migrator", "-password", password)
    sim.password = password
    si = sim.connect()
    folders = sim_rig.datastore_dirs(si)
    try:
        raw = tmp_path_factory.mktemp("vcenter") / "disk.raw"
        with open(raw, "wb") as handle:
            handle.truncate(1 << 20)
        fields = si.RetrieveContent().customFieldsManager
        wave = fields.AddCustomFieldDef(name="wave", moType=vim.VirtualMachine)
        for name, guest, value in ((AWX_VM, "debian11_64Guest", "3"), (AWX_VM + "-win", "windows9_64Guest", "3"),
                                   (AWX_VM + "-wave2", "debian11_64Guest", "2")):
            dsp, _flat, size = sim_rig.write_esxi_disk(si, name, name, str(raw))
            vm = sim_rig.create_vm(si, name, [sim_rig.disk_spec(dsp, size, key=2000)], guest_id=guest)
            fields.SetField(entity=vm, key=wave.key, value=value)
        yield sim
    finally:
        sim_rig.disconnect(si)
        sim.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def awx_job(vcenter, web_dashboard, libvirt_daemon, tmp_path_factory):
    """The project as AWX sees it and one job run of playbooks/migrate.yml with what AWX passes."""
    from rig.libvirt_cleanup import remove_migration

    project = tmp_path_factory.mktemp("awx") / "project"
    copy_playbook(project)
    inventories = project / "inventories"
    (inventories / "group_vars").mkdir(parents=True)
    (inventories / "prod.vsphere.yml").write_text(example("docs/awx.md", "awx-inventory-source").text)
    kvm_vars = example("docs/awx.md", "awx-kvm-host-vars").text
    assert "# group_vars/kvm_hosts.yml" in kvm_vars
    (inventories / "group_vars" / "kvm_hosts.yml").write_text(kvm_vars)
    # The second inventory source, the KVM hosts: kvm01 is this machine (local connection, the venv's Python;
    # `su` as the become method, the rig has no sudo).
    (inventories / "kvm_hosts.yml").write_text(yaml.safe_dump({"kvm_hosts": {"hosts": {"kvm01": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "ansible_become_method": "su"}}}}))
    # The credential: the simulator's address, account and port; its certificate is self-signed.
    credential = {"host": vcenter.host, "username": vcenter.username, "password": vcenter.password,
                  "port": str(vcenter.port), "validate_certs": False}
    env, extra_vars = render_injectors(yaml.safe_load(example("docs/awx.md", "awx-vcenter-credential-injectors")
                                                      .text), credential)
    (project.parent / "credential_extra_vars.json").write_text(json.dumps(extra_vars))
    # The web companion, as in Settings > Jobs > Extra Environment Variables, pointing at the rig's dashboard.
    companion = dict(line.split("=", 1) for line in example("docs/awx.md", "awx-web-companion").text.splitlines()
                     if line.strip())
    assert companion["V2KVM_WEB_URL"].startswith("https://") and companion["V2KVM_WEB_TOKEN"].startswith("<")
    companion.update(V2KVM_WEB_URL=web_dashboard.url, V2KVM_WEB_TOKEN=web_dashboard.token)
    job_env = clean_env(ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"), JOB_ID=JOB_ID,
                        AWX_HOST="https://awx.example.com", **env, **companion)
    # The job template's own extra variables: the rig's pool and work dir, VM Network on user networking, and
    # no validation (the simulated VM's 1 MiB disk holds no system to boot).
    site = {"migrate_vm_storage_pool": AWX_POOL, "migrate_vm_storage_pool_path": AWX_POOL_PATH,
            "migrate_vm_work_dir": str(project.parent / "work"), "migrate_vm_network_map": {"VM Network": "user"},
            "migrate_vm_validate": False}
    (project.parent / "job_extra_vars.json").write_text(json.dumps(site))
    sources = ["-i", "inventories/prod.vsphere.yml", "-i", "inventories/kvm_hosts.yml"]
    try:
        listed = subprocess.run([os.path.join(BIN, "ansible-inventory"), *sources, "--list"], cwd=project,
                                env=job_env, capture_output=True, text=True, timeout=300, check=False)
        job = subprocess.run([os.path.join(BIN, "ansible-playbook"), *sources, "playbooks/migrate.yml",
                              "-e", "@../job_extra_vars.json", "-e", "@../credential_extra_vars.json"],
                             cwd=project, env=job_env, capture_output=True, text=True, timeout=900, check=False)
        conn = libvirt.open(libvirt_daemon.uri)
        try:
            domains = [d.name() for d in conn.listAllDomains()]
        finally:
            conn.close()
        yield SimpleNamespace(listed=listed, job=job, domains=domains, env=env, extra_vars=extra_vars,
                              password=vcenter.password)
    finally:
        remove_migration(libvirt_daemon.uri, [AWX_VM], AWX_POOL, AWX_POOL_PATH)


def unsafe_json(text):
    return json.loads(text, object_hook=lambda d: d.get("__ansible_unsafe", d) if len(d) == 1 else d)


def test_awx_inventory_source_with_the_credential(awx_job):
    proc = awx_job.listed
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert awx_job.password not in proc.stdout + proc.stderr
    inventory = unsafe_json(proc.stdout)
    hostvars = inventory["_meta"]["hostvars"]
    # The filters keep the wave 3 Linux VM only; the groups and compose of the file apply.
    assert sorted(hostvars) == sorted([AWX_VM, "kvm01"]), sorted(hostvars)
    assert inventory["migrate"]["hosts"] == [AWX_VM] and inventory["firmware_bios"]["hosts"] == [AWX_VM]
    vm = hostvars[AWX_VM]
    assert (vm["ansible_connection"], vm["migrate_vm_source_type"], vm["migrate_vm_target_host"]) == \
        ("local", "vsphere", "kvm01")
    assert vm["v2kvm_spec"]["name"] == AWX_VM and vm["vsphere_attributes"] == {"wave": "3"}
    # The KVM host has the group variables of awx.md.
    assert inventory["kvm_hosts"]["hosts"] == ["kvm01"]
    assert hostvars["kvm01"]["ansible_user"] == "migrator" and hostvars["kvm01"]["ansible_become"] is True


def test_awx_job_migrates_with_the_credential(awx_job):
    proc = awx_job.job
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    # Port and certificate checking came from the extra variables (the simulator is on neither 443 nor a
    # trusted certificate), host, user and password from the environment.
    assert awx_job.extra_vars == {"migrate_vm_vsphere_port": awx_job.env["VMWARE_PORT"],
                                  "migrate_vm_vsphere_validate_certs": "False"}
    # Every phase ran on the KVM host the inventory source composed.
    assert re.search(r"changed: \[%s -> kvm01\]" % re.escape(AWX_VM), output), output[-3000:]
    assert AWX_VM in awx_job.domains
    assert awx_job.password not in output


def test_awx_web_companion_reports_the_job_under_its_id(awx_job, web_dashboard):
    deadline = time.monotonic() + 30
    while True:
        runs = [run for run in get_json(web_dashboard.url + "api/runs")["runs"] if run.get("label") == "job " + JOB_ID]
        if runs and runs[0].get("finished"):
            break
        assert time.monotonic() < deadline, get_json(web_dashboard.url + "api/runs")
        time.sleep(0.2)
    run = get_json(web_dashboard.url + "api/runs/" + runs[0]["id"])
    assert run["jobs"] == 1 and run["events"] > 0, run
    hosts = [vm["host"] for vm in run["summary"]["vms"]]
    assert hosts == [AWX_VM], run["summary"]
