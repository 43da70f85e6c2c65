"""Session fixtures for the vSphere tests: one vsphere-sim for the session (built from
../shared/vsphere-sim), a cached rig boot disk, and a factory of simulated VMs backed by real bytes."""

import os
import shutil
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sim_rig  # noqa: E402

REPO = sim_rig.REPO
SECRET = "Zq8-vault-" + uuid.uuid4().hex[:10]
CACHE = os.path.join(REPO, ".work", "test-cache", "vsphere")


@pytest.fixture(scope="session")
def sim_binary():
    try:
        return sim_rig.build_simulator()
    except sim_rig.SimUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def vsim(sim_binary):
    # A password no output could contain by chance, so "never shown" can be checked by searching for it.
    sim = sim_rig.start_simulator(sim_binary, "-api-version", "8.0.0.0", "-username", "v2kvm-tester",
                                  "-password", SECRET)
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def vsi(vsim):
    si = vsim.connect()
    # The simulator's datastores are temporary folders it never removes: taken with it, or every run
    # would leave its VMs' disks behind.
    folders = sim_rig.datastore_dirs(si)
    yield si
    sim_rig.disconnect(si)
    vsim.stop()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def boot_raw():
    from rig.guest_image import make_boot_disk

    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "vsphere-boot.raw")
    if not os.path.exists(path):
        make_boot_disk(path, marker="vsphere-sim", workdir=CACHE)
    return path


@pytest.fixture
def make_vm(vsi, boot_raw):
    """make_vm(**create_vm options) -> (vm, name, flat file path) with the rig boot disk as disk 0."""

    def make(prefix="v2kvm-test", disk_options=None, **options):
        name = "%s-%s" % (prefix, uuid.uuid4().hex[:6])
        dsp, flat, size = sim_rig.write_esxi_disk(vsi, name, name, boot_raw)
        vm = sim_rig.create_vm(vsi, name, [sim_rig.disk_spec(dsp, size, key=2000, **(disk_options or {}))],
                               **options)
        return vm, name, flat

    return make


def vsphere_args(sim, **extra):
    """Module arguments for ``sim``; ``extra`` adds options or overrides the connection ones."""
    args = {"hostname": sim.host, "port": sim.port, "username": sim.username, "password": sim.password,
            "validate_certs": False}
    args.update(extra)
    return args
