"""The README's "Install and run" commands, run as they are written: build the tarball, install it with
ansible-galaxy into a clean collections path, migrate one OVA with the installed collection (never the
checkout), and remove the guest with the README's own command.

The commands come out of README.md (blocks ``quickstart`` and ``quickstart-remove``), so the README
cannot drift from what works. The test only gives the block's three settings other values (WORK: a temp
folder, OVA: a copy of the demo BIOS appliance, VM: a name of this run) and puts the project venv first
on PATH, where ``ansible-galaxy``/``ansible-playbook`` of a user's venv would be.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid

import pytest
from rig.doc_examples import example
from rig.libvirt_cleanup import remove_domains, remove_pool

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:6]
VM = f"v2kvm-test-{RUN}-quick"
# The README's inventory keeps the role's default pool.
POOL, POOL_PATH = "v2kvm", "/var/lib/libvirt/images/v2kvm"


def with_settings(script, settings):
    """``script`` with the value of each ``NAME=value`` line of ``settings`` replaced (comments kept)."""
    for name, value in settings.items():
        pattern = re.compile(r"^%s=\S+" % name, re.M)
        assert len(pattern.findall(script)) == 1, f"the README quickstart no longer sets {name}=...:\n{script}"
        script = pattern.sub(lambda _m, n=name, v=value: f"{n}={shlex.quote(str(v))}", script)
    return script


def clean_env(**extra):
    """The caller's environment without any collections path: only what the README sets counts."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANSIBLE_") and k not in ("PYTHONPATH",)}
    env.update({"PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"})
    env.update(extra)
    return env


def bash(script, *, env, cwd, timeout):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def console(conn, name):
    from defusedxml import ElementTree

    log = ElementTree.fromstring(conn.lookupByName(name).XMLDesc(0)).find("./devices/serial/log")
    with open(log.get("file"), errors="replace") as handle:
        return handle.read()


@pytest.fixture
def target(libvirt_daemon):
    """The libvirt connection; removes this test's domain, its volumes, and the pool when the test made it."""
    conn = libvirt.open(libvirt_daemon.uri)
    try:
        conn.storagePoolLookupByName(POOL)
        pool_was_there = True
    except libvirt.libvirtError:
        pool_was_there = False
    yield conn
    conn.close()
    conn = libvirt.open(libvirt_daemon.uri)  # a fresh connection: it fails loudly if the daemon went away
    remove_domains(conn, [VM])
    try:
        pool = conn.storagePoolLookupByName(POOL)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if vol.name().startswith(VM):
                vol.delete(0)
    except libvirt.libvirtError:
        pass
    for leftover in (os.listdir(POOL_PATH) if os.path.isdir(POOL_PATH) else []):
        if leftover.startswith(VM) or leftover.startswith("." + VM):
            os.unlink(os.path.join(POOL_PATH, leftover))
    if not pool_was_there:
        # The pool's folder goes too when nothing but this test's files was in it.
        remove_pool(conn, POOL, POOL_PATH if os.path.isdir(POOL_PATH) and not os.listdir(POOL_PATH) else None)
    conn.close()


def test_readme_quickstart_builds_installs_and_migrates_one_ova(target, appliances, tmp_path):
    work = tmp_path / "work"
    ova = shutil.copy(appliances["demo-bios"], tmp_path / "web01.ova")  # a source no earlier test migrated
    script = with_settings(example("README.md", "quickstart").text, {"WORK": work, "OVA": ova, "VM": VM})
    env = clean_env()
    run = bash(script, env=env, cwd=REPO, timeout=1500)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]

    # The collection ran from the tarball installed into the clean path, not from the checkout.
    tarballs = sorted(p.name for p in (work / "dist").iterdir())
    installed = work / "collections" / "ansible_collections" / "v2kvm" / "migrate"
    manifest = json.loads((installed / "MANIFEST.json").read_text())
    assert tarballs == ["v2kvm-migrate-%s.tar.gz" % manifest["collection_info"]["version"]], tarballs
    assert not installed.is_symlink() and (installed / "roles" / "migrate_vm").is_dir()
    listed = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "v2kvm.migrate",
                             "--format", "json"], env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(work / "collections")),
                            capture_output=True, text=True, check=False)
    assert list(json.loads(listed.stdout)) == [str(work / "collections" / "ansible_collections")], listed
    assert "PLAY RECAP" in output and re.search(r"\b%s\s*: ok=\d+ .*failed=0" % re.escape(VM), output), \
        output[-3000:]

    # The guest runs and its boot marker is on its console.
    dom = target.lookupByName(VM)
    assert dom.isActive()
    assert "V2KVM-BOOT-OK demo-bios" in console(target, VM)

    # The README's way to remove it again, with the installed collection.
    remove = bash(example("README.md", "quickstart-remove").text,
                  env=clean_env(VM=VM, ANSIBLE_COLLECTIONS_PATH=str(work / "collections")), cwd=tmp_path, timeout=300)
    assert remove.returncode == 0, (remove.stdout + remove.stderr)[-3000:]
    with pytest.raises(libvirt.libvirtError):
        target.lookupByName(VM)
    assert not [f for f in os.listdir(POOL_PATH) if f.startswith(VM)], os.listdir(POOL_PATH)
