# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""disk_convert's reconciler with real qemu-img on small images made here."""

import json
import os
import signal
import subprocess

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_source, _convert_state, _qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_conversion import DiskConversion
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

MIB = 1 << 20
DEFAULTS = {"disk": None, "container": None, "src": None, "src_format": "vmdk", "dest": None,
            "dest_format": "qcow2", "state": "present", "force": False, "progress_file": None, "rate_limit": 0,
            "verify": "digest"}


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule(DEFAULTS, **options)


def run(**options):
    """One module run; the target lock is released at its end, as the module's exit does."""
    conversion = DiskConversion(FakeModule(**options))
    try:
        return conversion.run()
    finally:
        if conversion.lock is not None:
            conversion.lock.release()


def make_vmdk(path, seed, size=8 * MIB):
    raw = str(path) + ".raw"
    with open(raw, "wb") as out:
        out.truncate(size)
        out.seek(MIB)
        out.write(bytes([seed]) * MIB + os.urandom(MIB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, str(path)], check=True)
    os.unlink(raw)
    return str(path)


def listing(directory):
    return sorted(os.listdir(directory))


def samples(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def vmdk(tmp_path):
    (tmp_path / "src").mkdir()
    return make_vmdk(tmp_path / "src" / "disk.vmdk", 1)


@pytest.fixture
def out(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def test_check_mode_predicts_a_conversion_and_writes_nothing(vmdk, out):
    dest = str(out / "disk.qcow2")
    result = run(check_mode=True, diff=True, src=vmdk, dest=dest)
    assert result["changed"] is True and result["reason"] == "no sidecar state"
    assert result["virtual_size"] == 8 * MIB and result["actual_size"] is None and result["content_digest"] is None
    assert result["diff"]["before"] == {} and result["diff"]["after"]["virtual_size"] == 8 * MIB
    assert listing(out) == []


def test_a_conversion_then_a_second_run_changes_nothing(vmdk, out, tmp_path):
    dest, progress = str(out / "disk.qcow2"), str(tmp_path / "progress.jsonl")
    first = run(src=vmdk, dest=dest, progress_file=progress)
    assert first["changed"] is True and first["content_digest"].startswith("content-v")
    assert listing(out) == sorted(["disk.qcow2", ".disk.qcow2.v2kvm.json"])
    assert subprocess.run(["qemu-img", "compare", "-f", "vmdk", "-F", "qcow2", vmdk, dest], check=False).returncode == 0
    assert samples(progress)[-1]["stage"] == "done"
    assert (samples(progress)[-1]["done"], samples(progress)[-1]["total"]) == (8 * MIB, 8 * MIB)
    stamp = os.stat(dest).st_mtime_ns
    second = run(diff=True, src=vmdk, dest=dest)
    assert second["changed"] is False and second["reason"].startswith("up to date")
    assert second["content_digest"] == first["content_digest"] and "diff" not in second
    assert os.stat(dest).st_mtime_ns == stamp
    assert run(check_mode=True, src=vmdk, dest=dest)["changed"] is False


def test_a_changed_source_is_converted_again(vmdk, out):
    dest = str(out / "disk.qcow2")
    first = run(src=vmdk, dest=dest)
    make_vmdk(vmdk, 2)
    os.utime(vmdk, ns=(os.stat(vmdk).st_atime_ns, first["source_fingerprint"]["mtime_ns"] + 10 ** 9))
    again = run(diff=True, src=vmdk, dest=dest)
    assert again["changed"] is True and "source" in again["reason"] and "changed" in again["reason"]
    assert again["content_digest"] != first["content_digest"]
    assert again["diff"]["before"]["content_digest"] == first["content_digest"]
    assert subprocess.run(["qemu-img", "compare", "-f", "vmdk", "-F", "qcow2", vmdk, dest], check=False).returncode == 0


def test_a_disk_written_by_its_guest_is_kept_and_a_foreign_file_is_not_replaced(vmdk, out):
    dest = out / "disk.qcow2"
    run(src=vmdk, dest=str(dest))
    os.utime(dest, ns=(0, os.stat(dest).st_mtime_ns + 10 ** 9))  # as a booted guest leaves it
    kept = run(src=vmdk, dest=str(dest))
    assert kept["changed"] is False and "written since" in kept["reason"]
    foreign = out / "other.qcow2"
    foreign.write_bytes(b"someone else's disk")
    with pytest.raises(Failed, match="has no v2kvm sidecar"):
        run(src=vmdk, dest=str(foreign))
    assert foreign.read_bytes() == b"someone else's disk"
    assert run(src=vmdk, dest=str(foreign), force=True)["reason"] == "no sidecar state (force=true)"


def test_absent_removes_only_what_this_source_made(vmdk, out, tmp_path):
    dest = str(out / "disk.qcow2")
    run(src=vmdk, dest=dest)
    open(_convert_state.part_path(dest), "wb").close()
    other = make_vmdk(tmp_path / "src" / "other.vmdk", 3)
    spared = run(state="absent", src=other, dest=dest)
    assert spared["changed"] is True and spared["removed"] == [_convert_state.part_path(dest)] and spared["kept"]
    assert listing(out) == sorted(["disk.qcow2", ".disk.qcow2.v2kvm.json"])
    predicted = run(check_mode=True, state="absent", src=vmdk, dest=dest)
    assert predicted["changed"] is True and len(predicted["removed"]) == 2 and len(listing(out)) == 2
    assert run(diff=True, state="absent", src=vmdk, dest=dest)["diff"]["after"] == {}
    assert listing(out) == []
    assert run(state="absent", dest=dest)["changed"] is False


def test_the_source_location_is_derived_once_for_converting_and_for_removing(tmp_path):
    ova = tmp_path / "vm.ova"
    ova.write_bytes(b"x" * 4096)
    params = dict(DEFAULTS, disk={"path": None, "offset": 512, "size": 1024, "format": "raw"}, container=str(ova))
    assert _convert_source.location(params) == (str(ova), 512)
    recorded = _convert_state.source_fingerprint(str(ova), 512, 1024, None, "raw")
    assert _convert_source.resolve(params).fingerprint == recorded
    assert _convert_source.made_from(params, {"source": recorded})
    assert not _convert_source.made_from(dict(params, disk=dict(params["disk"], offset=0)), {"source": recorded})
    with pytest.raises(_convert_source.ConvertError, match="does not exist"):
        _convert_source.resolve(dict(DEFAULTS, src=str(tmp_path / "missing.vmdk")))


def test_sigterm_during_qemu_img_leaves_no_part_and_ends_failed(vmdk, out, tmp_path, monkeypatch):
    dest, progress = str(out / "disk.qcow2"), str(tmp_path / "progress.jsonl")
    real_convert = _qemu_img.convert
    seen = []

    def stopped_convert(src, src_fmt, dst, dst_fmt, *, on_progress=None, extra_options=None):
        def report(fraction):
            seen.append(os.path.exists(dst))  # qemu-img has made the part
            on_progress(fraction)
            os.kill(os.getpid(), signal.SIGTERM)
        real_convert(src, src_fmt, dst, dst_fmt, on_progress=report, extra_options=extra_options)

    monkeypatch.setattr(_qemu_img, "convert", stopped_convert)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Failed, match="interrupted by signal 15") as failed:
        run(src=vmdk, dest=dest, progress_file=progress)
    assert "nothing was left at %s" % dest in str(failed.value)
    assert seen and listing(out) == [], "no part, no dest, no sidecar"
    assert signal.getsignal(signal.SIGTERM) is handler
    last = samples(progress)[-1]
    assert (last["stage"], last["done"], last["total"]) == ("failed", 0, 8 * MIB)


def test_a_failed_check_after_the_conversion_reports_the_converted_bytes(vmdk, out, tmp_path, monkeypatch):
    dest, progress = str(out / "disk.qcow2"), str(tmp_path / "progress.jsonl")
    monkeypatch.setattr(_qemu_img, "check", lambda path, fmt: {"ok": False, "corruptions": 3, "raw": {}})
    with pytest.raises(Failed, match="found 3 corruptions"):
        run(src=vmdk, dest=dest, progress_file=progress)
    assert listing(out) == []
    last = samples(progress)[-1]
    assert (last["stage"], last["done"], last["total"]) == ("failed", 8 * MIB, 8 * MIB)
