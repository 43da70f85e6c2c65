"""Shared test set-up: the repo importable as ``ansible_collections.v2kvm.migrate``, the test rig
importable as ``rig``, and session fixtures for the real libvirt daemon and the demo appliances."""

import os
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
COLLECTIONS = os.path.join(REPO, ".work", "collections")
# Built appliances survive between runs: they depend only on their recipe (checked by the rig).
CACHE = os.path.join(REPO, ".work", "test-cache")


def _link_collection():
    link = os.path.join(COLLECTIONS, "ansible_collections", "v2kvm", "migrate")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(REPO, os.path.dirname(link)), link)


_link_collection()
for path in (COLLECTIONS, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def libvirt_daemon():
    """A libvirt daemon answering on qemu:///system: the system's, or one the tests start and stop."""
    from rig.libvirtd import ensure_libvirtd

    daemon = ensure_libvirtd(os.path.join(REPO, ".work", "test-libvirtd"))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def appliances():
    """name -> path of the demo OVAs (BIOS, two disks, UEFI, broken)."""
    from rig.appliances import build_demo_set

    return build_demo_set(os.path.join(CACHE, "appliances"), workdir=os.path.join(CACHE, "build"))


@pytest.fixture
def small_fs(tmp_path):
    """small_fs(MiB) mounts a tmpfs of that size under tmp_path: a file system that really runs out of space."""
    import subprocess

    mounts = []

    def mount(size_mib):
        directory = tmp_path / ("fs-%d" % len(mounts))
        directory.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dM" % size_mib, "v2kvm-test", str(directory)],
                       check=True)
        mounts.append(directory)
        return directory

    yield mount
    for directory in mounts:
        subprocess.run(["umount", str(directory)], check=False)
