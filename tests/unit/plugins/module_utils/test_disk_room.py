# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
import errno
import os
import subprocess

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _disk_room, _qemu_img


@pytest.mark.parametrize("size, text", [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"),
                                        (6619136, "6.3 MiB"), (3 << 40, "3.0 TiB")])
def test_sizes_read_like_df(size, text):
    assert _disk_room.human(size) == text


def test_ample_room_is_decided_without_reading_the_source(tmp_path):
    # The source does not exist: asking qemu-img would fail, so a None proves the statvfs path alone decided.
    assert _disk_room.shortfall(str(tmp_path / "missing.vmdk"), "vmdk", str(tmp_path / "d.qcow2"), "qcow2",
                                1 << 20) is None


def test_a_tight_fit_asks_qemu_img(tmp_path):
    free = _disk_room.free_bytes(str(tmp_path))
    with pytest.raises(_qemu_img.QemuImgError, match="measure"):
        _disk_room.shortfall(str(tmp_path / "missing.vmdk"), "vmdk", str(tmp_path / "d.qcow2"), "qcow2", free * 2)


def test_a_stale_temporary_counts_as_free(tmp_path):
    stale = tmp_path / ".d.qcow2.part"
    stale.write_bytes(os.urandom(8 << 20))
    dest, missing = str(tmp_path / "d.qcow2"), str(tmp_path / "missing.vmdk")
    # Needs 4 MiB more than is free: fits only with the stale file's 8 MiB given back (4 MiB of leeway
    # for whatever else writes to this file system meanwhile).
    bound = _disk_room.free_bytes(str(tmp_path)) + (4 << 20)
    virtual = (bound - (16 << 20)) * 4096 // 4097
    with pytest.raises(_qemu_img.QemuImgError):
        _disk_room.shortfall(missing, "vmdk", dest, "qcow2", virtual)
    assert _disk_room.shortfall(missing, "vmdk", dest, "qcow2", virtual, reclaimable=str(stale)) is None


@pytest.mark.parametrize("dest_format", ["qcow2", "raw"])
def test_a_sparse_disk_bigger_than_the_file_system_fits_by_its_data(tmp_path, dest_format):
    # 4 TiB of capacity, 2 MiB of data: more capacity than the test's file system has, so only the
    # allocated bytes can make it fit (qemu-img measure -O raw alone says "4 TiB": a sparse raw copy is refused).
    source = tmp_path / "sparse.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), "4T"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 7 1G 2M", str(source)], check=True,
                   stdout=subprocess.DEVNULL)
    free = _disk_room.free_bytes(str(tmp_path))
    if free >= 4 << 40 or free < 2 << 30:
        pytest.skip("needs a file system with between 2 GiB and 4 TiB free, this one has %d bytes" % free)

    assert _disk_room.shortfall(str(source), "qcow2", str(tmp_path / ("d." + dest_format)), dest_format,
                                4 << 40) is None


def test_needed_bytes_prefers_the_allocated_size():
    assert _disk_room.needed_bytes({"capacity_bytes": 80 << 30, "populated_bytes": 6 << 30}) == 6 << 30
    assert _disk_room.needed_bytes({"capacity_bytes": 80 << 30, "populated_bytes": None}) == 80 << 30
    assert _disk_room.needed_bytes({"capacity_bytes": 80 << 30, "populated_bytes": 0}) == 0


def test_a_file_system_filled_midway_names_the_sizes_and_how_much_to_free():
    msg = _disk_room.filled_up_message("/data/web01.vmdk", "/pool/web01.qcow2", "qcow2", 3 << 30, 1 << 30)
    assert msg.startswith("converting /data/web01.vmdk to qcow2 ran out of space: the file system holding /pool ")
    assert "after the free-space check had passed" in msg and "Nothing was left at /pool/web01.qcow2" in msg
    assert "needs 3.0 GiB (3221225472 bytes, qemu-img measure)" in msg and "has 1.0 GiB (1073741824 bytes) free" in msg
    assert msg.endswith("Fix: free at least 2.0 GiB on the file system holding /pool (or choose a dest on another "
                        "file system), then run again")


def test_once_the_space_is_back_the_fix_says_keep_it_free():
    msg = _disk_room.filled_up_message("/data/web01.vmdk", "/pool/web01.qcow2", "raw", 1 << 30, 1 << 30)
    assert msg.endswith("Fix: enough space is free again now: keep it free (stop what else writes there) and run "
                        "again")


def test_before_writing_the_same_rule_decides_whether_it_fits():
    assert _disk_room.shortfall_message("/pool/d.qcow2", 1 << 30, 1 << 30) is None
    msg = _disk_room.shortfall_message("/pool/d.qcow2", (1 << 30) + 512, 1 << 30)
    assert msg == ("not enough free space for /pool/d.qcow2: the converted disk needs 1.0 GiB (1073742336 bytes, "
                   "qemu-img measure) but the file system holding /pool has 1.0 GiB (1073741824 bytes) free; free at "
                   "least 512 bytes there, or choose a dest (storage pool) on another file system")
    assert [_disk_room.missing(need, 100) for need in (0, 100, 101)] == [0, 0, 1]


def test_full_file_systems_are_recognised_from_qemu_img_and_from_our_own_writes():
    full = _qemu_img.QemuImgError("convert failed", stderr="error while writing: " + os.strerror(errno.ENOSPC))
    assert _disk_room.out_of_space(full) and _disk_room.out_of_space(OSError(errno.EDQUOT, "quota"))
    assert not _disk_room.out_of_space(_qemu_img.QemuImgError("bad header", stderr="Invalid footer"))
    assert not _disk_room.out_of_space(OSError(errno.EIO, "I/O error"))
