"""v2kvm.migrate.disk_convert through its real entry point, with real qemu-img on images made here."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from rig.raw_images import write_sparse

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store
from ansible_collections.v2kvm.migrate.plugins.module_utils._content_digest import content_digest
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
MODULE = os.path.join(REPO, "plugins", "modules", "disk_convert.py")
ANSIBLE = os.path.join(REPO, ".venv", "bin", "ansible")
MIB = 1 << 20
SIZE = 64 * MIB
PATTERN = {0: b"\xeb\x63\x90" + b"boot" * 100, 7 * MIB + 3: os.urandom(2 * MIB + 5), 40 * MIB: b"middle",
           SIZE - 9: b"last byte"}


def run_module(tmp_path, check_mode=False, diff=False, **args):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, MODULE, str(args_file)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS), timeout=300, check=False)
    args_file.unlink()
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def start_module(tmp_path, **args):
    args_file = tmp_path / "args-bg.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    return subprocess.Popen([sys.executable, MODULE, str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS))


def make_raw(path, pattern=None, size=SIZE):
    return write_sparse(path, size, PATTERN if pattern is None else pattern)


def qemu_convert(src, src_fmt, dst, dst_fmt, *options):
    subprocess.run(["qemu-img", "convert", "-f", src_fmt, "-O", dst_fmt, *options, str(src), str(dst)], check=True)
    return str(dst)


def qemu_compare(a, a_fmt, b, b_fmt):
    return subprocess.run(["qemu-img", "compare", "-f", a_fmt, "-F", b_fmt, a, b], check=False).returncode


def read_at(path, offset, size):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def sha256_of(path, offset=0, size=None):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return hashlib.sha256(handle.read(size if size is not None else -1)).hexdigest()


def listing(directory):
    return sorted(os.listdir(directory))


@pytest.fixture
def raw(tmp_path):
    return make_raw(tmp_path / "original.raw")


@pytest.fixture
def stream_vmdk(tmp_path, raw):
    return qemu_convert(raw, "raw", tmp_path / "web01-disk1.vmdk", "vmdk", "-o", "subformat=streamOptimized")


@pytest.fixture
def out(tmp_path):
    directory = tmp_path / "pool"
    directory.mkdir()
    return directory


@pytest.fixture(scope="session")
def big_stream_vmdk(tmp_path_factory):
    """512 MiB disk with 6 x 48 MiB of random data: a conversion that takes a second or two."""
    directory = tmp_path_factory.mktemp("big")
    pattern = {i * 80 * MIB + i * 4096: os.urandom(48 * MIB) for i in range(6)}
    raw = make_raw(directory / "big.raw", pattern, 512 * MIB)
    vmdk = qemu_convert(raw, "raw", directory / "big.vmdk", "vmdk", "-o", "subformat=streamOptimized")
    os.unlink(raw)
    return vmdk


@pytest.mark.parametrize("subformat", ["streamOptimized", "monolithicSparse"])
@pytest.mark.parametrize("dest_format", ["qcow2", "raw"])
def test_vmdk_converts_with_identical_bytes_and_stays_sparse(tmp_path, raw, out, subformat, dest_format):
    vmdk = qemu_convert(raw, "raw", tmp_path / "disk.vmdk", "vmdk", "-o", "subformat=" + subformat)
    dest = str(out / ("disk." + dest_format))
    result = run_module(tmp_path, src=vmdk, dest=dest, dest_format=dest_format)
    assert result["changed"] is True, result
    assert qemu_compare(raw, "raw", dest, dest_format) == 0
    as_raw = dest if dest_format == "raw" else qemu_convert(dest, "qcow2", tmp_path / "back.raw", "raw")
    for offset, data in PATTERN.items():
        assert read_at(as_raw, offset, len(data)) == data
    assert result["virtual_size"] == SIZE
    assert result["actual_size"] == os.stat(dest).st_blocks * 512 < 8 * MIB, "dest must stay sparse"
    assert result["source_sha256"] == sha256_of(vmdk)
    assert result["content_digest"] == content_digest(raw, "raw")
    assert listing(out) == sorted(["disk." + dest_format, ".disk.%s.v2kvm.json" % dest_format])
    sidecar = json.loads((out / (".disk.%s.v2kvm.json" % dest_format)).read_text())
    assert sidecar["source"]["path"] == vmdk and sidecar["qemu_img_version"] == result["qemu_img_version"]
    assert sidecar["dest"] == {"size": os.stat(dest).st_size, "mtime_ns": os.stat(dest).st_mtime_ns}


def test_disk_inside_an_ova_is_read_in_place(tmp_path, raw, stream_vmdk, out):
    ovf = tmp_path / "web01.ovf"
    ovf.write_text("<Envelope/>\n" * 300)
    ova = tmp_path / "web01.ova"
    with tarfile.open(ova, "w") as tar:
        tar.add(ovf, "web01.ovf")
        tar.add(stream_vmdk, "web01-disk1.vmdk")
    with tarfile.open(ova) as tar:
        member = tar.getmember("web01-disk1.vmdk")
    assert member.offset_data > 0
    disk = {"id": "vmdisk1", "file": "web01-disk1.vmdk", "path": None, "member": member.name,
            "offset": member.offset_data, "size": member.size, "format": "vmdk", "subformat": "streamOptimized",
            "compression": None, "capacity_bytes": SIZE, "populated_bytes": None, "controller": "scsi",
            "unit": 0, "sha256": None, "sha1": None}
    before = listing(tmp_path)
    dest = str(out / "web01-vmdisk1.qcow2")
    result = run_module(tmp_path, disk=disk, container=str(ova), dest=dest)
    assert result["changed"] is True, result
    assert qemu_compare(raw, "raw", dest, "qcow2") == 0
    assert result["source_sha256"] == sha256_of(str(ova), member.offset_data, member.size) == sha256_of(stream_vmdk)
    assert result["source_fingerprint"]["offset"] == member.offset_data
    assert listing(tmp_path) == before, "nothing may be extracted beside the OVA"

    # A manifest-verified digest is reused, not recomputed (a wrong one would be returned as is).
    manifest = dict(disk, sha256="AB" * 32)
    result = run_module(tmp_path, disk=manifest, container=str(ova), dest=dest, force=True)
    assert result["source_sha256"] == "ab" * 32


def test_gzip_disk_is_refused_clearly(tmp_path, out):
    ova = tmp_path / "x.ova"
    ova.write_bytes(b"\0" * 4096)
    disk = {"id": "d1", "file": "d1.vmdk.gz", "path": None, "member": "d1.vmdk.gz", "offset": 1536, "size": 512,
            "format": "vmdk", "compression": "gzip", "sha256": None}
    result = run_module(tmp_path, disk=disk, container=str(ova), dest=str(out / "d1.qcow2"))
    assert result.get("failed") and "gzip" in result["msg"] and "decompress" in result["msg"]
    assert listing(out) == []


@pytest.mark.parametrize("kind", ["vmdk-extent", "qcow2-backing"])
def test_a_source_naming_a_file_outside_its_folder_is_refused_before_qemu_img_opens_it(tmp_path, out, kind):
    """src= and vSphere downloads come here without ova_info's checks: the header is read first. The named file
    is a FIFO, so a tool that opened it would hang instead of failing."""
    src_dir = tmp_path / "export"
    src_dir.mkdir()
    os.mkfifo(tmp_path / "pipe")
    if kind == "vmdk-extent":
        src, fmt = src_dir / "d.vmdk", "vmdk"
        src.write_text('# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 16 FLAT "../pipe" 0\n')
        words = "outside its own directory"
    else:
        src, fmt = src_dir / "d.qcow2", "qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", str(tmp_path / "pipe"),
                        str(src), "1M"], check=True)
        words = "backing file"

    result = run_module(tmp_path, src=str(src), src_format=fmt, dest=str(out / "d.qcow2"))

    assert result.get("failed") and words in result["msg"] and "pipe" in result["msg"], result
    assert listing(out) == []


def test_second_run_is_unchanged_and_does_not_convert(tmp_path, stream_vmdk, out):
    dest = str(out / "disk.qcow2")
    first = run_module(tmp_path, src=stream_vmdk, dest=dest)
    mtime = os.stat(dest).st_mtime_ns
    sidecar = (out / ".disk.qcow2.v2kvm.json").read_text()
    started = time.monotonic()
    second = run_module(tmp_path, src=stream_vmdk, dest=dest, progress_file=str(tmp_path / "p.jsonl"))
    assert time.monotonic() - started < 3
    assert second["changed"] is False, second
    assert os.stat(dest).st_mtime_ns == mtime, "an up-to-date dest must not be rewritten"
    assert (out / ".disk.qcow2.v2kvm.json").read_text() == sidecar
    assert not (tmp_path / "p.jsonl").exists(), "no conversion, so no progress"
    for key in ("virtual_size", "source_sha256", "content_digest", "source_fingerprint"):
        assert second[key] == first[key]


def test_guest_writes_are_kept_changed_source_and_missing_dest_are_reconverted(tmp_path, raw, stream_vmdk, out):
    dest = str(out / "disk.qcow2")
    run_module(tmp_path, src=stream_vmdk, dest=dest)
    # A booted guest writes to its disk: a re-run must keep those writes, not convert again.
    guest_raw = qemu_convert(dest, "qcow2", tmp_path / "guest.raw", "raw")
    with open(guest_raw, "r+b") as fh:
        fh.seek(30 * MIB)
        fh.write(b"GUEST-WROTE")
    qemu_convert(guest_raw, "raw", dest, "qcow2")
    result = run_module(tmp_path, src=stream_vmdk, dest=dest)
    assert result["changed"] is False and "written since" in result["reason"], result
    assert read_at(qemu_convert(dest, "qcow2", tmp_path / "c.raw", "raw"), 30 * MIB, 11) == b"GUEST-WROTE"

    # A new source export over a disk the guest has used needs force: those writes would be lost.
    changed_raw = make_raw(tmp_path / "changed.raw", {**PATTERN, 40 * MIB: b"MIDDLE"})
    qemu_convert(changed_raw, "raw", stream_vmdk, "vmdk", "-o", "subformat=streamOptimized")
    result = run_module(tmp_path, src=stream_vmdk, dest=dest)
    assert result.get("failed") and "force=true" in result["msg"] and "written since" in result["msg"], result
    result = run_module(tmp_path, src=stream_vmdk, dest=dest, force=True)
    assert result["changed"] is True and "source" in result["reason"]
    assert read_at(qemu_convert(dest, "qcow2", tmp_path / "b.raw", "raw"), 40 * MIB, 6) == b"MIDDLE"

    # Without guest writes, a changed source simply converts again.
    qemu_convert(raw, "raw", stream_vmdk, "vmdk", "-o", "subformat=streamOptimized")
    result = run_module(tmp_path, src=stream_vmdk, dest=dest)
    assert result["changed"] is True and "source" in result["reason"]
    assert qemu_compare(raw, "raw", dest, "qcow2") == 0

    os.unlink(dest)
    result = run_module(tmp_path, src=stream_vmdk, dest=dest)
    assert result["changed"] is True and "missing" in result["reason"]
    assert os.path.exists(dest)


def test_foreign_dest_is_not_overwritten_without_force(tmp_path, stream_vmdk, out):
    dest = out / "precious.qcow2"
    dest.write_bytes(b"someone else's disk")
    result = run_module(tmp_path, src=stream_vmdk, dest=str(dest))
    assert result.get("failed") and "force" in result["msg"]
    assert dest.read_bytes() == b"someone else's disk"
    assert run_module(tmp_path, src=stream_vmdk, dest=str(dest), force=True)["changed"] is True


def test_failed_convert_leaves_nothing(tmp_path, stream_vmdk, out):
    broken = tmp_path / "broken.vmdk"
    whole = open(stream_vmdk, "rb").read()
    broken.write_bytes(whole[: len(whole) // 2])
    result = run_module(tmp_path, src=str(broken), dest=str(out / "disk.qcow2"))
    assert result.get("failed"), result
    assert str(broken) in result["msg"]
    assert listing(out) == []


def _wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _converting(progress):
    def started():
        try:
            lines = progress.read_text().splitlines()
        except FileNotFoundError:
            return False
        return any(json.loads(line)["stage"] == "convert" and json.loads(line)["done"] > 0 for line in lines)
    return started


def _qemu_img_child(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
        for child in handle.read().split():
            with open("/proc/%s/comm" % child) as comm:
                if comm.read().strip() == "qemu-img":
                    return int(child)
    return None


@pytest.mark.parametrize("how", ["sigterm-module", "kill-qemu-img"])
def test_interrupted_convert_leaves_no_final_file_and_no_part(tmp_path, big_stream_vmdk, out, how):
    dest = out / "big.qcow2"
    progress = tmp_path / "progress.jsonl"
    # Throttled so the conversion is surely still running when it is interrupted, however idle the machine.
    proc = start_module(tmp_path, src=big_stream_vmdk, dest=str(dest), progress_file=str(progress),
                        rate_limit=64 * MIB)
    try:
        assert _wait_for(_converting(progress)), "conversion never started"
        if how == "sigterm-module":
            proc.send_signal(signal.SIGTERM)
        else:
            os.kill(_qemu_img_child(proc.pid), signal.SIGKILL)
        stdout = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(stdout)
    assert result.get("failed") and "nothing was left" in result["msg"], result
    assert listing(out) == [], "no dest, no .part, no sidecar"
    assert json.loads(progress.read_text().splitlines()[-1])["stage"] == "failed"


def test_progress_file_gets_a_line_every_second(tmp_path, big_stream_vmdk, out):
    progress = tmp_path / "progress.jsonl"
    result = run_module(tmp_path, src=big_stream_vmdk, dest=str(out / "big.raw"), dest_format="raw",
                        progress_file=str(progress))
    assert result["changed"] is True, result
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert set(lines[0]) == {"ts", "stage", "done", "total", "rate", "eta"}
    assert [line["stage"] for line in lines][0] == "convert" and lines[-1]["stage"] == "done"
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps)
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= 1.0, stamps
    converting = [line for line in lines if line["stage"] == "convert"]
    convert_seconds = next(line["ts"] for line in lines if line["stage"] != "convert") - converting[0]["ts"]
    assert len(converting) >= 1 + int(convert_seconds), (convert_seconds, lines)
    done = [line["done"] for line in lines]
    assert done == sorted(done), "done must never go backwards"
    assert all(line["total"] == 512 * MIB for line in lines)
    assert lines[-1]["done"] == 512 * MIB and lines[-1]["eta"] == 0


def test_progress_writer_heartbeat_covers_a_silent_producer(tmp_path):
    """qemu-img reports only every 1 %: on a big slow disk that is many seconds of silence."""
    path = tmp_path / "progress.jsonl"
    writer = ProgressWriter(str(path))
    writer.update("convert", 0, 1000)
    time.sleep(0.3)
    writer.update("convert", 300, 1000)
    time.sleep(2.5)  # silent producer
    writer.update("convert", 600, 1000)
    writer.update("done", 1000, 1000)
    writer.close()
    writer.update("convert", 1, 1000)  # after close: ignored, not an error
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    stamps = [line["ts"] for line in lines]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= 1.0, stamps
    assert len([line for line in lines if line["done"] == 300]) >= 3, "heartbeat repeats the last state"
    stalled = [line for line in lines if line["done"] == 300][1:]
    assert all(line["rate"] > 0 and line["eta"] is not None for line in stalled)
    assert stalled[-1]["rate"] < stalled[0]["rate"], "a stall decays the smoothed rate"
    assert lines[-1]["stage"] == "done" and lines[-1]["eta"] == 0
    assert [line["done"] for line in lines] == sorted(line["done"] for line in lines)


def test_state_absent_removes_dest_sidecar_and_part(tmp_path, stream_vmdk, out):
    dest = str(out / "disk.qcow2")
    run_module(tmp_path, src=stream_vmdk, dest=dest)
    (out / ".disk.qcow2.part").write_bytes(b"leftover")
    (out / "other.qcow2").write_bytes(b"keep me")
    check = run_module(tmp_path, check_mode=True, dest=dest, state="absent")
    assert check["changed"] is True and len(listing(out)) == 4
    result = run_module(tmp_path, dest=dest, state="absent", diff=True)
    assert result["changed"] is True and result["diff"]["after"] == {}
    assert listing(out) == ["other.qcow2"]
    assert run_module(tmp_path, dest=dest, state="absent")["changed"] is False


def test_check_mode_writes_nothing_and_diff_shows_the_plan(tmp_path, stream_vmdk, out):
    dest = str(out / "disk.qcow2")
    progress = tmp_path / "p.jsonl"
    result = run_module(tmp_path, check_mode=True, diff=True, src=stream_vmdk, dest=dest, progress_file=str(progress))
    assert result["changed"] is True and result["virtual_size"] == SIZE
    assert result["diff"]["before"] == {} and result["diff"]["after"]["source"] == stream_vmdk
    assert listing(out) == [] and not progress.exists()

    real = run_module(tmp_path, src=stream_vmdk, dest=dest)
    touched = os.stat(dest).st_mtime_ns
    result = run_module(tmp_path, check_mode=True, diff=True, src=stream_vmdk, dest=dest, dest_format="raw")
    assert result["changed"] is True
    assert result["diff"]["before"]["content_digest"] == real["content_digest"]
    assert result["diff"]["after"]["dest_format"] == "raw"
    assert os.stat(dest).st_mtime_ns == touched and listing(out) == [".disk.qcow2.v2kvm.json", "disk.qcow2"]


def test_verify_compare_and_none(tmp_path, raw, stream_vmdk, out):
    compared = run_module(tmp_path, src=stream_vmdk, dest=str(out / "a.qcow2"), verify="compare")
    assert compared["changed"] is True and compared["content_digest"] == content_digest(raw, "raw")
    bare = run_module(tmp_path, src=stream_vmdk, dest=str(out / "b.raw"), dest_format="raw", verify="none")
    assert bare["changed"] is True and bare["content_digest"] is None
    assert state_store.read_sidecar(str(out / "b.raw"))["verify"] == "none"


def test_bad_input_is_refused_before_anything_is_written(tmp_path, stream_vmdk, out):
    result = run_module(tmp_path, src=str(tmp_path / "missing.vmdk"), dest=str(out / "x.qcow2"))
    assert result.get("failed") and "missing.vmdk" in result["msg"]
    result = run_module(tmp_path, src=stream_vmdk, dest=str(tmp_path / "no-such-dir" / "x.qcow2"))
    assert result.get("failed") and "no-such-dir" in result["msg"] and "does not exist" in result["msg"]
    result = run_module(tmp_path, dest=str(out / "x.qcow2"))
    assert result.get("failed") and "disk" in result["msg"] and "src" in result["msg"]
    assert listing(out) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_a_disk_that_does_not_fit_is_refused_before_writing(tmp_path, small_fs):
    data = os.urandom(6 * MIB)
    raw = make_raw(tmp_path / "six.raw", {5 * MIB: data})
    vmdk = qemu_convert(raw, "raw", tmp_path / "six.vmdk", "vmdk", "-o", "subformat=streamOptimized")
    before = sha256_of(vmdk)
    tight = small_fs(4)
    for check_mode in (True, False):
        result = run_module(tmp_path, check_mode=check_mode, src=vmdk, dest=str(tight / "six.qcow2"))
        assert result.get("failed"), result
        assert "not enough free space" in result["msg"] and str(tight) in result["msg"], result["msg"]
        assert "qemu-img measure" in result["msg"] and "4.0 MiB" in result["msg"], result["msg"]
        assert listing(tight) == []
    # 10 MiB is less than the 64 MiB virtual size but more than the data: the exact need decides.
    roomy = small_fs(10)
    result = run_module(tmp_path, src=vmdk, dest=str(roomy / "six.qcow2"))
    assert result["changed"] is True, result
    assert qemu_compare(raw, "raw", str(roomy / "six.qcow2"), "qcow2") == 0
    assert sha256_of(vmdk) == before


@pytest.mark.skipif(not os.path.exists(ANSIBLE), reason="needs the repo venv's ansible")
def test_runs_through_ansible_adhoc(tmp_path, raw, stream_vmdk, out):
    dest = str(out / "adhoc.qcow2")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR="true")
    command = [ANSIBLE, "localhost", "-c", "local", "-m", "v2kvm.migrate.disk_convert",
               "-a", "src=%s dest=%s" % (stream_vmdk, dest)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    # Ad-hoc output is "localhost | CHANGED => {json}".
    task = json.loads(first.stdout.split("=>", 1)[1])
    again = json.loads(second.stdout.split("=>", 1)[1])
    assert first.stdout.startswith("localhost | CHANGED") and second.stdout.startswith("localhost | SUCCESS")
    assert task["changed"] is True and again["changed"] is False
    assert qemu_compare(raw, "raw", dest, "qcow2") == 0


def test_qemu_img_is_available():
    assert shutil.which("qemu-img"), "install qemu-utils"
