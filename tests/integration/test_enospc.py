"""A file system that fills up while disk_convert writes, after its free-space check passed.

The target is a size-limited tmpfs inside a private mount namespace (see rig.private_fs); the module runs
in that namespace through nsenter, and a second writer takes the remaining space once the conversion has
written its first megabytes. The run must fail saying which file system is full and what to free, leave
nothing behind, and a re-run after the space is freed must succeed with the source's content.
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from rig.private_fs import PrivateFs, host_mounts
from rig.raw_images import write_sparse

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
MODULE = os.path.join(REPO, "plugins", "modules", "disk_convert.py")
MIB = 1 << 20

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting in a private namespace needs root")]


def _args_file(tmp_path, args):
    path = tmp_path / ("args-%s.json" % uuid.uuid4().hex[:8])
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    return str(path)


def _start(fs, tmp_path, **args):
    return subprocess.Popen(fs.command([sys.executable, MODULE, _args_file(tmp_path, args)]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS))


def _result(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert out, err
    return json.loads(out)


def _wait_for_allocation(proc, path, at_least):
    """Poll until ``path`` holds ``at_least`` allocated bytes: the conversion is under way."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if os.stat(path).st_blocks * 512 >= at_least:
                return
        except FileNotFoundError:
            pass
        assert proc.poll() is None, "the conversion ended before the file system could be filled: %s" % (
            proc.communicate(),)
        assert time.monotonic() < deadline, "the conversion never started writing %s" % path
        time.sleep(0.01)


@pytest.mark.parametrize("dest_format", ["qcow2", "raw"])
def test_a_file_system_filled_midway_fails_cleanly_and_a_rerun_succeeds(tmp_path, dest_format):
    # 40 MiB of random data in a 48 MiB disk: allocated, so the conversion really writes that much.
    source = write_sparse(tmp_path / "source.raw", 48 * MIB, {4 * MIB: os.urandom(40 * MIB)})
    mountpoint = tmp_path / "fs"
    fs = PrivateFs(mountpoint, 64)
    try:
        dest = os.path.join(str(mountpoint), "disk.%s" % dest_format)
        part = fs.host_view(os.path.basename(state_store.part_path(dest)))
        args = dict(src=str(source), src_format="raw", dest=dest, dest_format=dest_format,
                    rate_limit=16 * MIB, progress_file=str(tmp_path / "progress.jsonl"))
        proc = _start(fs, tmp_path, **args)
        _wait_for_allocation(proc, part, 4 * MIB)
        filler = fs.fill()  # another writer takes the rest, after the module's check passed
        failed = _result(proc)
        assert failed.get("failed"), failed
        msg = failed["msg"]
        assert "ran out of space" in msg and "the file system holding %s" % mountpoint in msg, msg
        assert "after the free-space check had passed" in msg, msg
        assert "Nothing was left at %s" % dest in msg, msg
        assert "Fix: free at least" in msg and "then run again" in msg, msg
        assert "Traceback" not in msg
        assert fs.listing() == ["filler"], "no .part, no half-made disk, no sidecar"
        lines = (tmp_path / "progress.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["stage"] == "failed"

        os.unlink(filler)  # the space is freed
        again = _result(_start(fs, tmp_path, **args))
        assert again.get("changed") and not again.get("failed"), again
        assert sorted(fs.listing()) == sorted([os.path.basename(dest),
                                               os.path.basename(state_store.sidecar_path(dest))])
        same = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", dest_format, str(source),
                               fs.host_view(os.path.basename(dest))], capture_output=True, text=True, check=False)
        assert same.returncode == 0, same.stdout + same.stderr
        assert str(mountpoint) not in host_mounts(), "the tmpfs stays inside its namespace"
    finally:
        fs.close()
    assert os.listdir(mountpoint) == [], "the host never saw the files"
