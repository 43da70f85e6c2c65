"""storage_pool, domain and validate against a real libvirt daemon, with real TCG boots.

Every object is named v2kvm-test-<run>-..., and the `tracked` fixture removes each domain,
pool and directory a test made, whether the test passed or not.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from defusedxml import ElementTree as ET
from rig import ovf_package as pkg
from rig.guest_image import BOOT_OK, make_boot_disk

from ansible_collections.v2kvm.migrate.plugins.module_utils import _kvm_detect as kvm_detect

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
MODULES = os.path.join(REPO, "plugins", "modules")
RUN = uuid.uuid4().hex[:6]
PREFIX = f"v2kvm-test-{RUN}"
# qemu runs as libvirt-qemu and must reach the images: pytest's 0700 tmp dirs would not do.
IMAGES = "/var/lib/libvirt/images"
UNDEFINE_ALL = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def run_module(module, tmp_path, check_mode=False, diff=False, **args):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    args_file = tmp_path / f"args-{uuid.uuid4().hex[:8]}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, os.path.join(MODULES, f"{module}.py"), str(args_file)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS),
                          timeout=600, check=False)
    args_file.unlink()
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def spec_for(name, disk_paths, *, memory_mib=256, firmware="bios", mac="00:50:56:aa:bb:01"):
    return {
        "name": name,
        "source": {"type": "ova", "path": f"/nonexistent/{name}.ova", "manifest": None},
        "vcpus": 1,
        "cores_per_socket": 1,
        "memory_mib": memory_mib,
        "firmware": firmware,
        "secure_boot": False,
        "guest_os": {"id": "debian11_64Guest", "description": "Debian", "family": "linux"},
        "disks": [
            {"id": f"vmdisk{i}", "file": os.path.basename(p), "path": p, "member": None, "offset": 0,
             "size": os.path.getsize(p), "format": "raw", "subformat": None, "compression": None,
             "capacity_bytes": os.path.getsize(p), "populated_bytes": None, "controller": "scsi",
             "unit": i, "sha256": None, "sha1": None}
            for i, p in enumerate(disk_paths)
        ],
        "nics": [{"mac": mac, "network": "VM Network", "model": "vmxnet3"}],
        "annotation": "v2kvm integration test",
    }


def mark_as_converted(path):
    """Write the sidecar disk_convert leaves beside its results, which is what marks a volume as v2kvm's."""
    sidecar = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.v2kvm.json")
    with open(sidecar, "w") as handle:
        json.dump({"test": True}, handle)
    return sidecar


@pytest.fixture(scope="module")
def conn(libvirt_daemon):
    connection = libvirt.open(libvirt_daemon.uri)
    yield connection
    connection.close()


class Tracker:
    def __init__(self, conn):
        self.conn = conn
        self.domains, self.pools, self.dirs = [], [], []

    def cleanup(self):
        for name in self.domains:
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(UNDEFINE_ALL)
        for name in self.pools:
            try:
                pool = self.conn.storagePoolLookupByName(name)
            except libvirt.libvirtError:
                continue
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tracked(conn):
    tracker = Tracker(conn)
    yield tracker
    tracker.cleanup()


@pytest.fixture(scope="module")
def guest_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("guest-cache"))


@pytest.fixture
def pool(tracked, tmp_path):
    name = f"{PREFIX}-{uuid.uuid4().hex[:4]}"
    path = os.path.join(IMAGES, name)
    tracked.pools.append(name)
    tracked.dirs.append(path)
    result = run_module("storage_pool", tmp_path, name=name, path=path)
    assert result["changed"] and not result.get("failed"), result
    return {"name": name, "path": path}


def domain_xml(conn, name):
    return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def test_storage_pool_is_created_once_and_absent_keeps_files(conn, tracked, tmp_path):
    name = f"{PREFIX}-pool"
    path = os.path.join(IMAGES, name)
    tracked.pools.append(name)
    tracked.dirs.append(path)

    checked = run_module("storage_pool", tmp_path, check_mode=True, name=name, path=path)
    assert checked["changed"] is True
    with pytest.raises(libvirt.libvirtError):
        conn.storagePoolLookupByName(name)
    assert not os.path.exists(path)

    first = run_module("storage_pool", tmp_path, diff=True, name=name, path=path)
    assert first["changed"] is True and first["path"] == path
    assert first["capacity"] > 0 and 0 < first["available"] <= first["capacity"]
    assert first["diff"]["before"] == {"state": "absent"}
    pool = conn.storagePoolLookupByName(name)
    assert pool.isActive() and pool.autostart() and os.path.isdir(path)

    # A file written behind libvirt's back shows up after the module's refresh.
    with open(os.path.join(path, "late.raw"), "wb") as handle:
        handle.truncate(1 << 20)
    second = run_module("storage_pool", tmp_path, name=name, path=path)
    assert second["changed"] is False
    assert "late.raw" in pool.listVolumes()

    moved = run_module("storage_pool", tmp_path, name=name, path=path + "-elsewhere")
    assert moved["failed"] and "already exists for" in moved["msg"] and path in moved["msg"]

    gone = run_module("storage_pool", tmp_path, name=name, state="absent")
    assert gone["changed"] is True
    with pytest.raises(libvirt.libvirtError):
        conn.storagePoolLookupByName(name)
    assert os.path.exists(os.path.join(path, "late.raw")), "absent must never delete files"
    assert run_module("storage_pool", tmp_path, name=name, state="absent")["changed"] is False


def test_storage_pool_ensured_by_many_forks_at_once_succeeds_everywhere(conn, tracked, tmp_path):
    # Every VM of a run ensures the same pool at the same moment, as Ansible's forks do.
    name = f"{PREFIX}-race"
    path = os.path.join(IMAGES, name)
    tracked.pools.append(name)
    tracked.dirs.append(path)
    procs = []
    for index in range(6):
        args_file = tmp_path / f"race-{index}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"name": name, "path": path}}))
        procs.append(subprocess.Popen([sys.executable, os.path.join(MODULES, "storage_pool.py"), str(args_file)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONPATH=COLLECTIONS)))
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert not [r for r in results if r.get("failed")], results
    pool = conn.storagePoolLookupByName(name)
    assert pool.isActive() and pool.autostart() and os.path.isdir(path)


def test_bad_uri_errors_name_the_fix(tmp_path):
    unknown = run_module("storage_pool", tmp_path, uri="bogus:///system", name="x", path="/nonexistent")
    assert unknown["failed"] and "bogus:///system" in unknown["msg"] and "qemu:///system" in unknown["msg"]
    no_daemon = run_module("domain", tmp_path, uri=f"qemu+unix:///system?socket={tmp_path}/missing-sock",
                           name="x", state="absent")
    assert no_daemon["failed"] and "no libvirt daemon listens there" in no_daemon["msg"]
    assert "start it" in no_daemon["msg"]


def test_domain_defines_once_redefines_on_change_and_check_mode_defines_nothing(
        conn, tracked, pool, tmp_path, guest_cache):
    name = f"{PREFIX}-def"
    tracked.domains.append(name)
    disk = make_boot_disk(os.path.join(pool["path"], f"{name}-0.raw"), marker=name, workdir=guest_cache)
    args = dict(spec=spec_for(name, [disk]), disks=[disk], network_map={"VM Network": "user"}, domain_type="qemu")

    checked = run_module("domain", tmp_path, check_mode=True, diff=True, **args)
    assert checked["changed"] is True and "memory_kib: 262144" in checked["diff"]["after"]
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)

    first = run_module("domain", tmp_path, **args)
    assert first["changed"] is True, first
    xml = domain_xml(conn, name)
    assert f"<source pool='{pool['name']}' volume='{name}-0.raw'/>" in xml
    assert "<interface type='user'>" in xml and "00:50:56:aa:bb:01" in xml
    assert f"/var/log/libvirt/qemu/{name}-serial0.log" in xml and "append='off'" in xml
    assert "https://v2kvm.dev/xmlns/migration/1" in xml and "<v2kvm:phase>defined</v2kvm:phase>" in xml
    assert first["metadata"]["volumes"][0]["owned"] is False

    second = run_module("domain", tmp_path, diff=True, **args)
    assert second["changed"] is False, second["diff"]
    assert second["metadata"] == first["metadata"], "a no-op run must not touch timestamps"
    assert domain_xml(conn, name) == xml

    time.sleep(1.1)  # timestamps have one-second resolution
    bigger = {**args, "spec": spec_for(name, [disk], memory_mib=384)}
    third = run_module("domain", tmp_path, diff=True, **bigger)
    assert third["changed"] is True
    assert "-memory_kib: 262144" in _unified(third["diff"]) and "+memory_kib: 393216" in _unified(third["diff"])
    assert conn.lookupByName(name).maxMemory() == 384 * 1024
    assert third["metadata"]["defined_at"] == first["metadata"]["defined_at"]
    assert third["metadata"]["updated_at"] != first["metadata"]["updated_at"]

    # Drift: someone edits the domain outside v2kvm; the next run puts our settings back.
    edited = domain_xml(conn, name).replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>")
    edited = edited.replace("<topology sockets='1' dies='1' cores='1' threads='1'/>",
                            "<topology sockets='2' dies='1' cores='1' threads='1'/>")
    conn.defineXML(edited)
    assert conn.lookupByName(name).vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 2
    fourth = run_module("domain", tmp_path, diff=True, **bigger)
    assert fourth["changed"] is True and fourth["drift"] is True
    assert "-vcpus: 2" in _unified(fourth["diff"])
    assert conn.lookupByName(name).vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 1
    assert run_module("domain", tmp_path, **bigger)["changed"] is False

    phase = run_module("domain", tmp_path, metadata={"phase": "validated", "wave": 3}, **bigger)
    assert phase["changed"] is True and phase["metadata"]["phase"] == "validated"
    assert phase["metadata"]["extra"] == {"wave": 3}
    # Later runs without a phase keep the recorded one instead of resetting it.
    assert run_module("domain", tmp_path, metadata={"wave": 3}, **bigger)["changed"] is False


def test_a_source_name_that_is_no_domain_name_is_derived_kept_as_title_and_found_again(
        conn, tracked, pool, tmp_path):
    """An ovftool/VirtualBox-style name ("Web Server 01 (Mönch)") needs no override: the domain gets a
    derived name, its <title> is the original, and migration_state finds it by the original."""
    original = "Web Server 01 (Mönch) %s" % RUN
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * (1 << 20))
    vmdk = pkg.to_vmdk(str(raw), str(tmp_path / "web-disk1.vmdk"), "streamOptimized")
    ovf = pkg.write_ovf(str(tmp_path / "web.ovf"), name=original, vcpus=1, memory_mib=128, firmware="bios",
                        os_type="debian11_64Guest", disks=[pkg.disk_entry(vmdk, disk_id="vmdisk1")],
                        nics=[{"mac": "00:50:56:aa:bb:07", "network": "VM Network", "model": "vmxnet3"}])
    ova = pkg.make_ova(str(tmp_path / "web.ova"), ovf, [vmdk], digest="sha512")

    info = run_module("ova_info", tmp_path, path=ova)
    spec = info["spec"]
    assert spec["original_name"] == original and spec["source"]["manifest"] == "sha512", info
    name = spec["name"]
    assert name.startswith("Web-Server-01-Monch-%s-" % RUN) and len(name) <= 64, name
    tracked.domains.append(name)
    disk = os.path.join(pool["path"], "%s-0.raw" % name)
    shutil.copyfile(raw, disk)
    defined = run_module("domain", tmp_path, spec=spec, disks=[disk], network_map={"VM Network": "user"},
                         domain_type="qemu")
    assert defined["changed"] and not defined.get("failed"), defined
    assert ET.fromstring(domain_xml(conn, name)).findtext("title") == original

    found = run_module("migration_state", tmp_path, name=original)
    assert found["found"] is True and found["name"] == name, found

    # The domain is this source's own (unfinished) migration: a re-run's pre-flight takes it as no conflict;
    # another source declaring the same name does conflict.
    uri = conn.getURI()
    own = run_module("preflight", tmp_path, spec=spec, uri=uri, fail_on_critical=False)
    assert "name_conflict" not in [f["rule"] for f in own["findings"]], own["findings"]
    other = dict(spec, source=dict(spec["source"], path=str(tmp_path / "other.ova")))
    clash = run_module("preflight", tmp_path, spec=other, uri=uri, fail_on_critical=False)
    assert "name_conflict" in [f["rule"] for f in clash["findings"]], clash["findings"]


def _unified(diff):
    import difflib

    return "\n".join(difflib.unified_diff(diff["before"].splitlines(), diff["after"].splitlines(), lineterm=""))


def test_unmapped_network_fails_naming_network_map(tracked, pool, tmp_path, guest_cache):
    name = f"{PREFIX}-nonet"
    tracked.domains.append(name)
    disk = os.path.join(pool["path"], "blank.raw")
    with open(disk, "wb") as handle:
        handle.truncate(1 << 20)
    result = run_module("domain", tmp_path, spec=spec_for(name, [disk]), disks=[disk], domain_type="qemu")
    assert result["failed"] and "network_map" in result["msg"] and "'VM Network'" in result["msg"]


def test_validate_boots_and_reports_the_marker_line(conn, tracked, pool, tmp_path, guest_cache):
    name = f"{PREFIX}-boot"
    tracked.domains.append(name)
    source = make_boot_disk(os.path.join(guest_cache, f"{name}-source.raw"), marker=name, workdir=guest_cache)
    disk = os.path.join(pool["path"], f"{name}-0.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", source, disk], check=True)
    defined = run_module("domain", tmp_path, spec=spec_for(name, [source]), disks=[disk],
                         network_map={"VM Network": "user"}, domain_type="qemu")
    assert defined["changed"] and 'type="qcow2"' in defined["xml"], defined

    result = run_module("validate", tmp_path, name=name, boot_timeout=90,
                        content_compare=[{"source": spec_for(name, [source])["disks"][0], "target": disk}])
    verdict = result["verdict"]
    assert result["changed"] is True and verdict["booted"] is True, verdict
    assert verdict["matched_line"] == f"{BOOT_OK} {name}"
    assert 0 < verdict["seconds_to_boot"] < 90
    names = [c["name"] for c in verdict["checks"]]
    assert names == ["qemu-img compare", "qemu-img check"] and all(c["ok"] for c in verdict["checks"])
    assert any(BOOT_OK in line for line in verdict["console_tail"])
    print(f"TCG boot of {name} (qcow2, BIOS): {verdict['seconds_to_boot']} s")

    again = run_module("validate", tmp_path, name=name, boot_timeout=30)
    assert again["changed"] is False and again["verdict"]["booted"] is True
    assert again["verdict"]["checks"][0]["ok"] is None, "a running domain's image cannot be checked"

    # A re-run of a validated, running guest: its disks moved on from the source; nothing fails, nothing stops.
    rerun = run_module("validate", tmp_path, name=name, content_compare=[{"source": source, "target": disk}])
    assert rerun["changed"] is False and rerun["verdict"]["booted"] is True, rerun
    compare = rerun["verdict"]["checks"][0]
    assert compare["name"] == "qemu-img compare" and compare["ok"] is None and "running" in compare["detail"]
    assert conn.lookupByName(name).isActive()


def test_validate_fails_on_kernel_panic_and_ignores_the_previous_boot(conn, tracked, pool, tmp_path, guest_cache):
    name = f"{PREFIX}-panic"
    tracked.domains.append(name)
    disk = os.path.join(pool["path"], f"{name}-0.raw")
    serial_log = os.path.join("/var/log/libvirt/qemu", f"{name}-serial0.log")
    args = dict(network_map={"VM Network": "user"}, domain_type="qemu")
    make_boot_disk(disk, marker=name, workdir=guest_cache)
    run_module("domain", tmp_path, spec=spec_for(name, [disk]), disks=[disk], **args)
    good = run_module("validate", tmp_path, name=name, boot_timeout=90)
    assert good["verdict"]["booted"] is True, good
    conn.lookupByName(name).destroy()
    with open(serial_log, errors="replace") as handle:
        assert BOOT_OK in handle.read(), "the previous boot's success line is still in the log"

    # Same domain, same log file, now a disk that panics: only this boot's output may count.
    make_boot_disk(disk, marker=name, broken=True, workdir=guest_cache)
    bad = run_module("validate", tmp_path, name=name, boot_timeout=90)
    verdict = bad["verdict"]
    assert bad["failed"] and bad["changed"] is True
    assert verdict["booted"] is False and "Kernel panic" in verdict["reason"]
    assert "Kernel panic" in verdict["matched_line"] and "Kernel panic" in bad["msg"]
    assert not any(BOOT_OK in line for line in verdict["console_tail"])
    assert not conn.lookupByName(name).isActive(), "on_failure=destroy stops the failed guest"


def test_uefi_domain_boots_and_absent_removes_nvram_and_owned_volumes_only(
        conn, tracked, pool, tmp_path, guest_cache):
    name = f"{PREFIX}-uefi"
    tracked.domains.append(name)
    boot = make_boot_disk(os.path.join(pool["path"], f"{name}-0.raw"), marker=name, firmware="uefi",
                          workdir=guest_cache)
    sidecar = mark_as_converted(boot)
    foreign = os.path.join(pool["path"], f"{name}-1.raw")
    with open(foreign, "wb") as handle:
        handle.truncate(8 << 20)
    defined = run_module("domain", tmp_path, spec=spec_for(name, [boot, foreign], firmware="uefi"),
                         disks=[boot, foreign], network_map={"VM Network": "user"}, domain_type="qemu")
    assert defined["changed"], defined
    assert [v["owned"] for v in defined["metadata"]["volumes"]] == [True, False]
    assert 'firmware="efi"' in defined["xml"] and '<feature enabled="no" name="secure-boot" />' in defined["xml"]

    result = run_module("validate", tmp_path, name=name, boot_timeout=120)
    assert result["verdict"]["booted"] is True, result
    print(f"TCG boot of {name} (raw, UEFI): {result['verdict']['seconds_to_boot']} s")
    nvram = conn.lookupByName(name).XMLDesc(0).split("<nvram", 1)[1].split(">", 2)[1].split("<", 1)[0]
    assert os.path.exists(nvram), nvram

    checked = run_module("domain", tmp_path, check_mode=True, name=name, state="absent", remove_volumes=True)
    assert checked["changed"] and checked["removed_volumes"] == [boot]
    assert conn.lookupByName(name).isActive() and os.path.exists(boot)

    gone = run_module("domain", tmp_path, name=name, state="absent", remove_volumes=True)
    assert gone["changed"] and gone["removed_volumes"] == [boot]
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    assert not os.path.exists(nvram) and not os.path.exists(boot) and not os.path.exists(sidecar)
    assert os.path.exists(foreign), "a disk v2kvm did not create is never deleted"
    assert run_module("domain", tmp_path, name=name, state="absent")["changed"] is False


def test_auto_domain_type_matches_what_a_kvm_guest_really_does(conn, tracked, pool, tmp_path, guest_cache):
    detection = kvm_detect.detect_domain_type(conn, use_cache=False)
    print("KVM detection:", json.dumps(detection))
    log_dir = str(tmp_path)
    assert kvm_detect.time_to_banner(conn, "qemu", log_dir, 10.0) is not None, "the probe guest must work under TCG"
    probe_ok, detail, timings = kvm_detect.probe_guest_runs(conn, log_dir)
    print("boot probe:", probe_ok, detail, timings)

    # Ground truth: does a real guest print its marker under type='kvm'?
    name = f"{PREFIX}-kvm"
    tracked.domains.append(name)
    disk = make_boot_disk(os.path.join(pool["path"], f"{name}-0.raw"), marker=name, workdir=guest_cache)
    run_module("domain", tmp_path, spec=spec_for(name, [disk]), disks=[disk], network_map={"VM Network": "user"},
               domain_type="qemu")
    # Same guest under KVM with the plain qemu64 CPU, so the start itself cannot fail on CPU features.
    conn.defineXML(domain_xml(conn, name).replace("<domain type='qemu'>", "<domain type='kvm'>", 1))
    real = run_module("validate", tmp_path, name=name, boot_timeout=30, check_images=False)
    print("real KVM boot:", real["verdict"]["reason"], real["verdict"]["console_tail"][-3:])
    assert real["verdict"]["booted"] is probe_ok, (real["verdict"], detail)
    assert (detection["domain_type"] == "kvm") is real["verdict"]["booted"], detection

    auto = run_module("domain", tmp_path, spec=spec_for(name, [disk]), disks=[disk],
                      network_map={"VM Network": "user"})
    assert auto["domain_type"] == detection["domain_type"]
    assert f"<domain type='{detection['domain_type']}'" in domain_xml(conn, name)


def test_validate_stopped_while_the_guest_boots_fails_and_stops_the_guest_it_started(conn, tracked, pool, tmp_path,
                                                                                     guest_cache):
    name = f"{PREFIX}-stop"
    tracked.domains.append(name)
    disk = os.path.join(pool["path"], f"{name}-0.raw")
    make_boot_disk(disk, marker=name, workdir=guest_cache)
    run_module("domain", tmp_path, spec=spec_for(name, [disk]), disks=[disk], network_map={"VM Network": "user"},
               domain_type="qemu")
    args_file = tmp_path / "args.json"
    # A pattern the guest never prints: only the SIGTERM (what Ctrl-C and the orphan watchdog send) ends the wait.
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "name": name, "boot_timeout": 300, "success_pattern": "NEVER-PRINTED", "check_images": False}}))
    proc = subprocess.Popen([sys.executable, os.path.join(MODULES, "validate.py"), str(args_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _active(conn, name):
            time.sleep(0.2)
        assert _active(conn, name), "validate started the guest"
        time.sleep(2)
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out)
    assert result["failed"] and "interrupted (signal 15) while the guest booted" in result["msg"], (result, err)
    assert result["verdict"]["booted"] is False and result["changed"] is True
    assert not _active(conn, name), "on_failure=destroy stops the guest the interrupted run started"


def _active(conn, name):
    try:
        return bool(conn.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return False
