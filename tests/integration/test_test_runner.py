"""`make test` (scripts/test.sh) says up front when the scratch space is too small for the tests."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_too_little_scratch_space_stops_the_run_with_the_fix(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64M", "v2kvm-test", str(tiny)], check=True)
    try:
        proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "test.sh")], capture_output=True, text=True,
                              env=dict(os.environ, TMPDIR=str(tiny)), timeout=600, check=False)
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "only 64 MiB free on the file system of %s" % tiny in proc.stderr, proc.stderr
    assert "TMPDIR" in proc.stderr and "== ruff" not in proc.stdout  # stopped before any check ran
