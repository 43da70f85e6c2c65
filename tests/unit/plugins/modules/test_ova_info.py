"""v2kvm.migrate.ova_info through its real entry points: `python -m` with an args file, and `ansible`."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from rig import ovf_package as pkg

from ansible_collections.v2kvm.migrate.plugins.modules import ova_info

MIB = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
BIN = os.path.dirname(sys.executable)


@pytest.fixture
def ova(tmp_path):
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(4 * MIB)
        handle.write(b"MBR!" * 128)
    vmdk = pkg.to_vmdk(str(raw), str(tmp_path / "web01-disk1.vmdk"), "streamOptimized")
    ovf = pkg.write_ovf(str(tmp_path / "web01.ovf"), name="web01", vcpus=2, memory_mib=2048, firmware="uefi",
                        os_type="debian11_64Guest", disks=[pkg.disk_entry(vmdk, disk_id="vmdisk1")],
                        nics=[{"mac": "00:50:56:aa:bb:cc", "network": "VM Network", "model": "vmxnet3"}])
    return pkg.make_ova(str(tmp_path / "web01.ova"), ovf, [vmdk])


def _run_module_file(tmp_path, args):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.v2kvm.migrate.plugins.modules.ova_info", str(args_file)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS), cwd=str(tmp_path),
        check=False, timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_python_m_returns_the_spec_in_check_mode(tmp_path, ova):
    before = pkg.file_digest(ova)
    rc, result = _run_module_file(tmp_path, {"path": ova, "require_manifest": True, "_ansible_check_mode": True})

    assert rc == 0, result
    assert result["changed"] is False
    spec = result["spec"]
    assert spec["name"] == "web01" and spec["firmware"] == "uefi" and spec["memory_mib"] == 2048
    assert spec["source"] == {"type": "ova", "path": ova, "manifest": "sha256"}
    assert spec["disks"][0]["member"] == "web01-disk1.vmdk" and spec["disks"][0]["capacity_bytes"] == 4 * MIB
    assert pkg.file_digest(ova) == before


def test_python_m_failure_names_the_override(tmp_path, ova):
    rc, result = _run_module_file(tmp_path, {"path": ova, "name": "web 01"})
    assert rc == 1 and result["failed"] is True
    assert "`name` option" in result["msg"]


def test_ansible_adhoc_command(tmp_path, ova):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [os.path.join(BIN, "ansible"), "localhost", "-c", "local", "-m", "v2kvm.migrate.ova_info",
         "-a", json.dumps({"path": ova})],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The ad-hoc default callback prints "localhost | SUCCESS => {json}".
    assert "localhost | SUCCESS => " in proc.stdout, proc.stdout
    result = json.loads(proc.stdout.split(" => ", 1)[1])
    assert result["changed"] is False
    assert result["spec"]["nics"] == [{"mac": "00:50:56:aa:bb:cc", "network": "VM Network", "model": "vmxnet3"}]


class _Captured(Exception):
    pass


def test_argument_spec_matches_documentation(monkeypatch):
    captured = {}

    def fake_module(**kwargs):
        captured.update(kwargs)
        raise _Captured

    monkeypatch.setattr(ova_info, "AnsibleModule", fake_module)
    with pytest.raises(_Captured):
        ova_info.main()
    documented = yaml.safe_load(ova_info.DOCUMENTATION)["options"]
    spec = captured["argument_spec"]
    assert set(spec) == set(documented)
    for option, doc in documented.items():
        assert spec[option]["type"] == doc["type"], option
        assert spec[option].get("default") == doc.get("default"), option
        assert spec[option].get("choices") == doc.get("choices"), option
        assert spec[option].get("required", False) == doc.get("required", False), option
    assert captured["supports_check_mode"] is True
    yaml.safe_load(ova_info.EXAMPLES)
    yaml.safe_load(ova_info.RETURN)
