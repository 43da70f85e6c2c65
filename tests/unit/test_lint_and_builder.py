"""The execution environment's build context (scripts/build_ee_context.sh, ansible-builder create): the
collection goes in under a name without its version, and its Python and system requirements come once,
from the installed collection (meta/execution-environment.yml), the way ansible-builder's own
introspection reads them inside the image build. No container runtime is needed. The commands are
docs/ee.md's blocks ee-context and ee-introspect, run as written."""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml
from rig.doc_examples import example

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
TARBALL = "context-src/v2kvm-migrate.tar.gz"


def _requirement_lines(path):
    with open(path) as fh:
        return [line.split("#", 1)[0].strip() for line in fh if line.split("#", 1)[0].strip()]


def _name(requirement):
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def _bash(block, cwd, env):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def tmp_env(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("scratch")
    return dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), TMPDIR=str(scratch))


@pytest.fixture(scope="module")
def context(tmp_env, tmp_path_factory):
    # Where the doc's command writes to .work/ee (its default), the test sets EE_DIR: runs may overlap.
    ee_dir = tmp_path_factory.mktemp("ee")
    run = _bash(example("docs/ee.md", "ee-context"), REPO, dict(tmp_env, EE_DIR=str(ee_dir)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return ee_dir


def test_the_context_holds_a_containerfile_and_the_collection_without_its_version(context):
    with open(os.path.join(REPO, "execution-environment.yml")) as fh:
        definition = yaml.safe_load(fh)
    containerfile = (context / "context" / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    assert "ansible-galaxy collection install" in containerfile and "introspect.py introspect" in containerfile

    # The definition names the tarball without a version; the tarball holds whatever galaxy.yml says.
    assert definition["dependencies"]["galaxy"]["collections"] == [{"name": TARBALL, "type": "file"}]
    with open(os.path.join(REPO, "galaxy.yml")) as fh:
        galaxy = yaml.safe_load(fh)
    with tarfile.open(context / "context" / "_build" / TARBALL) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        names = tar.getnames()
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("v2kvm", "migrate", galaxy["version"])
    # What the image's introspection reads, at the collection root.
    assert {"meta/execution-environment.yml", "requirements.txt", "bindep.txt"} <= set(names)
    # The build context is not in the collection.
    assert not [name for name in names if name.startswith((".work", "context", ".venv"))]


def test_requirements_are_listed_once_and_read_from_the_installed_collection(context, tmp_env, tmp_path):
    with open(os.path.join(REPO, "execution-environment.yml")) as fh:
        dependencies = yaml.safe_load(fh)["dependencies"]
    # Not in the EE definition: only the collection names them.
    assert "python" not in dependencies and "system" not in dependencies
    assert not (context / "context" / "_build" / "requirements.txt").exists()
    assert not (context / "context" / "_build" / "bindep.txt").exists()

    # ansible-builder's introspection (what the image build runs) over the collection installed from the
    # tarball, run from a folder where .work/ee is the context the fixture made.
    (tmp_path / ".work").mkdir()
    os.symlink(context, tmp_path / ".work" / "ee")
    run = _bash(example("docs/ee.md", "ee-introspect"), tmp_path, tmp_env)
    assert run.returncode == 0, run.stdout + run.stderr
    # After ansible-galaxy's messages, introspect's YAML document.
    assert "\n---\n" in run.stdout, run.stdout
    found = yaml.safe_load(run.stdout.split("\n---\n", 1)[1])
    python = [line.split("#", 1)[0].strip() for line in found["python"]]
    system = [line.split("#", 1)[0].strip() for line in found["system"]]
    # Every requirement of requirements.txt but ansible-core, which the EE installs itself (next test).
    wanted = [req for req in _requirement_lines(os.path.join(REPO, "requirements.txt"))
              if _name(req) != "ansible-core"]
    assert python == wanted
    assert system == _requirement_lines(os.path.join(REPO, "bindep.txt"))
    assert all(line.endswith("# from collection v2kvm.migrate") for line in found["python"] + found["system"])


def test_the_ee_installs_the_ansible_core_range_of_requirements_txt():
    with open(os.path.join(REPO, "execution-environment.yml")) as fh:
        core = yaml.safe_load(fh)["dependencies"]["ansible_core"]["package_pip"]
    wanted = [req for req in _requirement_lines(os.path.join(REPO, "requirements.txt")) if _name(req) == "ansible-core"]
    assert [core.replace(" ", "")] == [req.replace(" ", "") for req in wanted]


def test_bindep_on_the_rpm_base_image_installs_the_rpm_lines_only():
    """What the image's bindep picks on an RPM distribution: the builder stage's compile packages and
    the final image's runtime packages, none of the Debian ones the test rig uses."""
    from bindep.depends import Depends

    with open(os.path.join(REPO, "bindep.txt")) as fh:
        depends = Depends(fh.read())
    platform = ["platform:rpm", "platform:centos", "platform:redhat"]

    def packages(profile):
        return {rule[0] for rule in depends.active_rules([profile, *platform])}

    assert packages("default") == {"libvirt-client", "qemu-img"}
    assert {"gcc", "python3-devel", "pkgconf-pkg-config", "libvirt-devel"} <= packages("compile")
