"""The collection as Galaxy and its users see it: galaxy.yml, LICENSE, the built tarball, version_added,
the action groups of meta/runtime.yml, and the changelog fragments (antsibull-changelog lint)."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
COLLECTIONS = os.path.join(REPO, ".work", "collections")
# Galaxy's categories: a collection is listed under the ones its tags name.
GALAXY_CATEGORIES = {"application", "cloud", "database", "infrastructure", "linux", "monitoring", "networking",
                     "security", "storage", "tools", "windows"}
# What never belongs in the tarball: caches, scratch space, the venv, CI, benchmarks, EE build contexts.
NEVER_BUILT = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".tox", ".nox", ".venv", ".work",
               ".ci", ".git", "bench", "context", "context-src", "node_modules"}
# The options that define each action group: a group holds exactly the modules that have all of them.
GROUP_OPTIONS = {
    "libvirt": {"uri"},
    "vsphere": {"hostname", "username", "password", "port", "validate_certs", "timeout"},
}


def galaxy():
    with open(os.path.join(REPO, "galaxy.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def version_tuple(text):
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", str(text))
    assert match, f"{text!r} is not a MAJOR.MINOR.PATCH version"
    return tuple(int(part) for part in match.groups())


def ansible_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return env


# -- galaxy.yml and LICENSE ------------------------------------------------------------------------------------

def test_galaxy_yml_is_complete_and_has_no_placeholders():
    meta = galaxy()
    for key in ("namespace", "name", "version", "readme", "authors", "description", "license", "tags",
                "build_ignore"):
        assert meta.get(key), f"galaxy.yml has no {key}"
    assert (meta["namespace"], meta["name"]) == ("v2kvm", "migrate")
    version_tuple(meta["version"])
    with open(os.path.join(REPO, "galaxy.yml"), encoding="utf-8") as handle:
        text = handle.read().lower()
    for placeholder in ("example.invalid", "example.com", "example.org", "todo", "changeme", "your name"):
        assert placeholder not in text, f"galaxy.yml still says {placeholder!r}"
    for key in ("repository", "documentation", "homepage", "issues"):
        if key in meta:  # left out while nothing real exists
            assert re.match(r"https://[a-z0-9.-]+\.[a-z]{2,}/", str(meta[key])), (key, meta[key])
    assert os.path.isfile(os.path.join(REPO, meta["readme"]))


def test_galaxy_tags_are_valid_and_name_a_category():
    tags = galaxy()["tags"]
    assert len(tags) <= 20 and len(set(tags)) == len(tags), tags
    assert not [t for t in tags if not re.fullmatch(r"[a-z0-9]{1,64}", t)], "Galaxy tags are lowercase alphanumeric"
    assert GALAXY_CATEGORIES & set(tags), f"no Galaxy category among the tags (one of {sorted(GALAXY_CATEGORIES)})"


def test_license_is_the_full_gpl3_text():
    assert galaxy()["license"] == ["GPL-3.0-or-later"] and "license_file" not in galaxy()
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as handle:
        text = handle.read()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE") and "Version 3, 29 June 2007" in text[:200]
    assert "END OF TERMS AND CONDITIONS" in text and "How to Apply These Terms to Your New Programs" in text
    debian = "/usr/share/common-licenses/GPL-3"
    if os.path.exists(debian):
        with open(debian, encoding="utf-8") as handle:
            assert text == handle.read()


def test_build_ignore_names_every_cache_and_build_folder():
    ignored = set(galaxy()["build_ignore"])
    expected = NEVER_BUILT - {".git"} | {"*.pyc", "tests/output", "*.tar.gz"}
    assert expected <= ignored, sorted(expected - ignored)


# -- the built tarball -----------------------------------------------------------------------------------------

JUNK = [  # planted in a copy of the tree before the build: none of it may reach the tarball
    ".venv/bin/python", ".work/demo/appliances/demo-bios.ova", ".ci/run", ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/0.6.0/123", ".mypy_cache/3.11/x.json", "plugins/modules/__pycache__/ova_info.cpython-311.pyc",
    "plugins/module_utils/_vm_spec.pyc", "tests/unit/.pytest_cache/v/cache/nodeids", "tests/output/junit/x.xml",
    "bench/bench_convert.py", "context/_build/requirements.txt", "context-src/v2kvm-migrate-0.1.0.tar.gz",
    "node_modules/chart.js/package.json", "plugins/plugin_utils/web_server/web_static/node_modules/x/index.js",
    "v2kvm-migrate-0.1.0.tar.gz", "dist.tar.gz",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(tarball member names, FILES.json paths, MANIFEST.json, source tree) of a build of a copy of the repo
    with caches, scratch files and old tarballs planted in it."""
    tmp = tmp_path_factory.mktemp("galaxy-build")
    tree = tmp / "src"
    shutil.copytree(REPO, tree, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".venv", ".work", "__pycache__", "*.pyc", ".pytest_cache",
                                                  ".ruff_cache", "output", "context", "context-src", "*.tar.gz"))
    for junk in JUNK:
        path = tree / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("junk\n")
    out = tmp / "dist"
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out),
                           str(tree)], capture_output=True, text=True, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tarball,) = out.iterdir()
    assert tarball.name == "v2kvm-migrate-%s.tar.gz" % galaxy()["version"]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        files = json.load(tar.extractfile("FILES.json"))
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    return names, [entry["name"] for entry in files["files"]], manifest, tree


def test_tarball_has_no_cache_or_build_folder(built):
    names, files, _manifest, _tree = built
    for listing in (names, files):
        bad = [n for n in listing if NEVER_BUILT & set(n.split("/")) or n.endswith((".pyc", ".pyo", ".tar.gz"))
               or n.startswith("tests/output")]
        assert not bad, bad
    assert not [j for j in JUNK if j in names]


def test_tarball_lists_every_plugin_role_and_the_metadata(built):
    names, files, manifest, tree = built
    plugins = sorted(os.path.relpath(os.path.join(root, name), tree)
                     for root, dirs, found in os.walk(tree / "plugins") for name in found
                     if "__pycache__" not in root and "node_modules" not in root and not name.endswith(".pyc"))
    assert plugins and [p for p in plugins if p.startswith("plugins/modules/")]
    missing = [p for p in plugins if p not in files or p not in names]
    assert not missing, missing
    for needed in ("meta/runtime.yml", "LICENSE", "README.md", "roles/migrate_vm/tasks/main.yml",
                   "roles/migrate_vm/meta/argument_specs.yml", "playbooks/migrate.yml", "changelogs/config.yaml"):
        assert needed in files, needed
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("v2kvm", "migrate", galaxy()["version"])
    assert info["license"] == ["GPL-3.0-or-later"] and info["tags"] == galaxy()["tags"]


# -- version_added ---------------------------------------------------------------------------------------------

def documentation(path):
    """The DOCUMENTATION YAML of a plugin file, or None when it has none."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(node.value.value)
    return None


def versions_added(doc, where):
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "version_added":
                yield where, value
            else:
                yield from versions_added(value, f"{where}.{key}")
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from versions_added(value, f"{where}[{index}]")


def plugin_docs():
    for kind in sorted(os.listdir(os.path.join(REPO, "plugins"))):
        folder = os.path.join(REPO, "plugins", kind)
        if kind in ("module_utils", "plugin_utils", "doc_fragments", "action") or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py") and not name.startswith("_") and name != "__init__.py":
                yield f"plugins/{kind}/{name}", documentation(os.path.join(folder, name))


def test_every_plugin_has_a_version_added_no_later_than_galaxy_version():
    release = version_tuple(galaxy()["version"])
    seen, late = 0, []
    for path, doc in plugin_docs():
        assert doc, f"{path} has no DOCUMENTATION"
        assert "version_added" in doc, f"{path}: no top-level version_added"
        for where, value in versions_added(doc, path):
            seen += 1
            if version_tuple(value) > release:
                late.append(f"{where}: {value}")
    for role in sorted(os.listdir(os.path.join(REPO, "roles"))):
        spec = os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")
        if os.path.exists(spec):
            with open(spec, encoding="utf-8") as handle:
                for where, value in versions_added(yaml.safe_load(handle), f"roles/{role}"):
                    seen += 1
                    if version_tuple(value) > release:
                        late.append(f"{where}: {value}")
    assert seen >= 12
    assert not late, f"version_added after galaxy.yml's version {galaxy()['version']}: {late}"


# -- action groups ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def module_options():
    """module name -> set of its options, as ansible-doc reads them (doc fragments included)."""
    names = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, "plugins", "modules"))
                   if n.endswith(".py") and not n.startswith("_"))
    proc = subprocess.run([os.path.join(BIN, "ansible-doc"), "-t", "module", "--json",
                           *("v2kvm.migrate." + n for n in names)],
                          capture_output=True, text=True, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    return {n: set(docs["v2kvm.migrate." + n]["doc"].get("options", {})) for n in names}


def test_action_groups_hold_exactly_the_modules_sharing_their_options(module_options):
    with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as handle:
        groups = yaml.safe_load(handle)["action_groups"]
    assert set(groups) == set(GROUP_OPTIONS), "a new group needs its defining options in GROUP_OPTIONS"
    for group, members in groups.items():
        assert all(isinstance(m, str) for m in members), f"{group}: plain module names only"
        unknown = [m for m in members if m not in module_options]
        assert not unknown, f"group {group} names modules that do not exist: {unknown}"
        should = sorted(m for m, options in module_options.items() if GROUP_OPTIONS[group] <= options)
        assert sorted(members) == should, (
            f"group {group} must hold every module with the options {sorted(GROUP_OPTIONS[group])}, and only "
            f"those: module_defaults through the group would otherwise fail or miss a module")


# -- changelog fragments ---------------------------------------------------------------------------------------

def antsibull_changelog():
    path = os.path.join(BIN, "antsibull-changelog")
    if not os.path.exists(path):
        pytest.fail("antsibull-changelog is not installed: it is in requirements-dev.txt (scripts/setup.sh)")
    return path


def test_changelog_fragments_pass_antsibull_changelog_lint():
    proc = subprocess.run([antsibull_changelog(), "lint"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_changelog_yaml_is_valid():
    # changelogs/changelog.yaml holds the releases made so far; ansible-lint (galaxy[no-changelog]) and Galaxy
    # want it to exist before the first release too.
    proc = subprocess.run([antsibull_changelog(), "lint-changelog-yaml", "changelogs/changelog.yaml"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_changelog_lint_catches_a_bad_fragment(tmp_path):
    shutil.copy(os.path.join(REPO, "galaxy.yml"), tmp_path)
    (tmp_path / "changelogs" / "fragments").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "changelogs", "config.yaml"), tmp_path / "changelogs")
    (tmp_path / "changelogs" / "fragments" / "bad.yml").write_text("new_things:\n  - a section that does not exist\n")
    proc = subprocess.run([antsibull_changelog(), "lint"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "bad.yml" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
