#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: disk_convert
short_description: Convert one VM disk to qcow2 or raw with qemu-img
version_added: 0.1.0
description:
  - Converts one disk of a VM spec (or a plain image file) with C(qemu-img convert) to qcow2 or raw,
    keeping it sparse. A disk inside an OVA is read in place through its byte offset; nothing is extracted.
  - The result is written to C(.NAME.part) beside O(dest), checked (C(qemu-img check) for qcow2),
    flushed to disk and only then renamed to O(dest). A failure or interruption removes the temporary file,
    so a half-made image never appears under the final name.
  - Before anything is written, also in check mode, the file system of O(dest) must have room for the result.
    When its free space is below the virtual size, C(qemu-img measure) gives the exact need, and a disk that
    does not fit fails at once with both sizes instead of filling the file system halfway through.
  - If the file system fills up anyway during the conversion (something else wrote there), the module fails
    naming the file system, the size the disk needs and how much to free; the temporary file is removed.
  - A hidden sidecar C(.NAME.v2kvm.json) beside O(dest) records the source fingerprint, the source file
    digest, the content digest of the result and the qemu-img version. A later run with the same source and
    an untouched O(dest) (same size and mtime) does nothing and reads no disk data; a changed source or a
    missing or modified O(dest) is converted again.
  - O(state=absent) removes O(dest), its sidecar and any leftover temporary file (used by rollback).
  - While it works (not in check mode) the module holds an flock on C(.NAME.v2kvm.lock) beside O(dest), which
    names its process and progress heartbeat, and removes it at the end. A conversion of the same O(dest) left
    running by a killed run of the same job (same O(progress_file)) is stopped first (SIGTERM, its clean-up
    runs); one of another run is waited for, and stopped only once its controller has not polled it for 30
    seconds. The wait is reported in O(progress_file).
options:
  disk:
    description:
      - One entry of the VM spec's C(disks) list, as returned by M(v2kvm.migrate.ova_info).
      - Its C(format), C(path) or O(container), C(offset), C(size), C(member), C(compression) and C(sha256)
        are used. When C(sha256) is set (a manifest verified it) it is reused as RV(source_sha256).
      - Disks with C(compression=gzip) are refused; unpack and decompress them first and use O(src).
      - Mutually exclusive with O(src).
    type: dict
  container:
    description:
      - Path of the OVA holding the disk, that is the spec's C(source.path). Used only when O(disk)
        has no C(path) (the spec leaves it null for disks inside an OVA).
    type: path
  src:
    description:
      - Path of a plain image file to convert. Mutually exclusive with O(disk).
    type: path
  src_format:
    description:
      - qemu-img format name of O(src). Ignored with O(disk), which carries its own C(format).
    type: str
    default: vmdk
  dest:
    description:
      - Path of the converted image. Its directory must exist.
      - An existing file without a sidecar is not overwritten unless O(force=true).
    type: path
    required: true
  dest_format:
    description:
      - Format of the converted image. C(raw) is written sparse.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  state:
    description:
      - V(present) converts when needed; V(absent) removes O(dest), its sidecar and any temporary file.
      - With V(absent) and O(disk) or O(src) given, O(dest) and its sidecar are removed only when the sidecar
        records that source (a rollback removing what earlier runs of the same VM left); the temporary file
        goes in any case.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Convert even when the sidecar says O(dest) is up to date, and replace an O(dest) that has no sidecar.
    type: bool
    default: false
  rate_limit:
    description:
      - Most bytes per second qemu-img may write (its C(-r)), so a migration leaves I/O for the guests already
        running on the host. V(0) means no limit.
    type: int
    default: 0
  progress_file:
    description:
      - When set, JSON lines C({"ts", "stage", "done", "total", "rate", "eta"}) are appended to this file at
        least once per second while qemu-img runs (C(stage=convert), then C(verify)), and a last line with
        C(stage=done) (or C(failed)). Byte counts refer to the virtual disk size.
    type: path
  verify:
    description:
      - How much to check the result before it is renamed into place. C(qemu-img check) always runs on qcow2
        (metadata only, milliseconds).
      - V(none) adds nothing; RV(content_digest) is then null.
      - V(digest) (the default) reads the data extents of the result once, mostly from the page cache just
        filled by the conversion, on two threads, overlapped with the flush to disk, to compute RV(content_digest).
        About 0.15 s per GiB of data with the Python package C(blake3) on the target, 0.4 s without; holes
        cost nothing.
      - V(compare) also runs C(qemu-img compare) of the source against the result, which reads and decodes the
        whole source again; expect the step to take about twice as long as the conversion.
    type: str
    choices: [none, digest, compare]
    default: digest
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the sidecar summary before and after.
  platform:
    platforms: posix
  idempotent:
    description: Running the module twice with the same input changes nothing the second time.
    support: full
notes:
  - Needs C(qemu-img) (Debian package C(qemu-utils)) on the target. The Python package C(blake3) there is
    optional and makes the content digest about 2.5 times faster.
  - Re-running after the guest has written to O(dest) converts again and discards those writes, because
    O(dest) no longer matches its sidecar. Stop converting once the VM has been started.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Convert every disk of an OVA, reading them in place
  v2kvm.migrate.disk_convert:
    disk: "{{ item }}"
    container: "{{ spec.source.path }}"
    dest: "/var/lib/libvirt/images/{{ spec.name }}-{{ item.id }}.qcow2"
    progress_file: "/var/lib/v2kvm/progress/{{ spec.name }}-{{ item.id }}.jsonl"
  loop: "{{ spec.disks }}"

- name: Convert a plain VMDK to a sparse raw file and compare it with the source
  v2kvm.migrate.disk_convert:
    src: /data/exports/db01-disk1.vmdk
    dest: /var/lib/libvirt/images/db01-disk1.raw
    dest_format: raw
    verify: compare

- name: Roll back a conversion
  v2kvm.migrate.disk_convert:
    dest: /var/lib/libvirt/images/web01-vmdisk1.qcow2
    state: absent
"""

RETURN = r"""
dest:
  description: Path of the converted image.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web01-vmdisk1.qcow2
dest_format:
  description: Format of the converted image.
  returned: always
  type: str
  sample: qcow2
virtual_size:
  description: Size of the disk the guest sees, in bytes.
  returned: when state=present
  type: int
  sample: 21474836480
actual_size:
  description: Bytes allocated on the host for O(dest); null in check mode before a conversion.
  returned: when state=present
  type: int
  sample: 1073872896
source_fingerprint:
  description: What identifies the source without reading it (stat and any manifest digest).
  returned: when state=present
  type: dict
  sample: {"path": "/data/web01.ova", "offset": 10240, "size": 734003200, "mtime_ns": 1700000000000000000,
           "format": "vmdk", "sha256": null}
source_sha256:
  description:
    - sha256 of the source file bytes (of the disk's bytes inside the OVA). Taken from the disk's manifest digest
      when known, otherwise computed while qemu-img runs. Null in check mode when not known yet.
  returned: when state=present
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
content_digest:
  description:
    - Digest of the guest-visible content of the result, the same for the same content whatever the format or
      allocation. The virtual disk is cut into 1 MiB chunks; an all-zero chunk contributes the byte 0x00, any
      other chunk 0x01 followed by its hash H; the digest is H over C(v2kvm-content-vN\n), the virtual size
      and the chunk size (8-byte big-endian each) and those records, written as C(content-vN:<hex>).
    - Version 2 (H is BLAKE3) when the Python package C(blake3) is installed on the target, else version 1
      (H is sha256). Only digests of the same version compare.
    - Null with O(verify=none) or in check mode before a conversion.
  returned: when state=present
  type: str
  sample: content-v2:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
qemu_img_version:
  description: Version of qemu-img that made O(dest).
  returned: when state=present
  type: str
  sample: 7.2.22
reason:
  description: Why a conversion was (or would be) done, or why nothing was done.
  returned: always
  type: str
  sample: source mtime_ns changed
removed:
  description: Files removed (or, in check mode, that would be) by O(state=absent).
  returned: when state=absent
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/web01-vmdisk1.qcow2, /var/lib/libvirt/images/.web01-vmdisk1.qcow2.v2kvm.json]
kept:
  description: Why O(state=absent) left O(dest) in place (its sidecar records another source); null otherwise.
  returned: when state=absent
  type: str
"""

# Ansible modules import after their documentation strings, hence the E402 waivers.
import errno  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _disk_room as disk_room  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock as target_lock  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _source_references as references  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._content_digest import content_digest, file_sha256  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._stop_signal import Interrupted, raise_on_sigterm  # noqa: E402


class _Failure(Exception):
    pass


def _write_back_until(path, finished, every=0.5):
    """Flush `path` to disk periodically until `finished` is set.

    qemu-img convert writes through the page cache without flushing; pushing the data out
    while it still decodes the source overlaps the disk writes with its CPU work, so the
    final fsync has little left to do.
    """
    fd = None
    try:
        while not finished.wait(every):
            if fd is None and os.path.exists(path):
                fd = os.open(path, os.O_RDONLY)
            if fd is not None:
                os.fdatasync(fd)
    except OSError:
        pass  # the final fsync reports real problems; this is only an optimisation
    finally:
        if fd is not None:
            os.close(fd)


def _source(module):
    """(qemu-img source string, format, fingerprint, known sha256) for the disk or src option."""
    params = module.params
    disk = params["disk"]
    if disk is not None:
        try:
            source = _qemu_img.image_source(disk, params["container"])
        except _qemu_img.QemuImgError as exc:
            module.fail_json(msg=str(exc))
        path = disk.get("path") or params["container"]
        fmt = disk.get("format") or "vmdk"
        offset = int(disk.get("offset") or 0)
        size = disk.get("size")
        known_sha256 = disk.get("sha256")
    else:
        path = source = params["src"]
        fmt = params["src_format"]
        offset, size, known_sha256 = 0, None, None
    if not os.path.isfile(path):
        module.fail_json(msg="source %s does not exist or is not a file; check the disk path "
                             "(or container) / src option" % path)
    try:
        # Before qemu-img opens it: a header may name files outside the export (extents, backing files).
        references.check_image_file(path, offset, inside_archive=bool(disk and (disk.get("member") or offset)),
                                    name=(disk or {}).get("file"))
    except SourceError as exc:
        module.fail_json(msg=str(exc))
    fingerprint = state_store.source_fingerprint(path, offset, size, known_sha256, fmt)
    return source, fmt, fingerprint, known_sha256


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _made_from(module, dest):
    """With disk or src given: whether dest's sidecar records that source (same real path and offset)."""
    disk, params = module.params["disk"], module.params
    path = (disk.get("path") or params["container"]) if disk is not None else params["src"]
    offset = int((disk or {}).get("offset") or 0)
    recorded = (state_store.read_sidecar(dest) or {}).get("source") or {}
    return bool(path) and recorded.get("path") == os.path.realpath(path) and recorded.get("offset") == offset


def _absent(module, dest):
    sidecar = state_store.sidecar_path(dest)
    part = state_store.part_path(dest)
    existing = [path for path in (dest, sidecar, part) if os.path.lexists(path)]
    kept = None
    if (module.params["disk"] is not None or module.params["src"]) and existing != [part] and existing \
            and not _made_from(module, dest):
        kept = "kept %s: its sidecar does not record this source" % dest
        existing = [path for path in existing if path == part]
    reason = "removed %s" % ", ".join(existing) if existing else "nothing to remove"
    result = {"changed": bool(existing), "dest": dest, "dest_format": module.params["dest_format"],
              "reason": "%s; %s" % (reason, kept) if kept else reason, "removed": existing, "kept": kept}
    if module._diff:
        result["diff"] = {"before": state_store.summary(state_store.read_sidecar(dest)), "after": {}}
    if existing and not module.check_mode:
        for path in existing:
            _remove(path)
        state_store.fsync_directory(os.path.dirname(dest))
    module.exit_json(**result)


def _result_from_state(dest, state, reason, changed):
    stat = os.stat(dest)
    return {
        "changed": changed, "dest": dest, "dest_format": state["dest_format"],
        "virtual_size": state.get("virtual_size"), "actual_size": stat.st_blocks * 512,
        "source_fingerprint": state["source"], "source_sha256": state.get("source_sha256"),
        "content_digest": state.get("content_digest"), "qemu_img_version": state.get("qemu_img_version"),
        "reason": reason,
    }


def _out_of_space(exc):
    """Whether ``exc`` is a full file system (or quota), reported by qemu-img or by our own writes."""
    if isinstance(exc, _qemu_img.QemuImgError):
        return exc.no_space
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _no_space_message(source, fmt, dest, dest_format, virtual_size):
    """The file system of dest filled up during the conversion although the check before it passed: another
    writer took the space. Says which file system, what the disk needs, what is free now (the partial file
    is already removed) and the fix."""
    directory = os.path.dirname(dest)
    try:
        need = disk_room.converted_bytes(source, fmt, dest_format)
    except (_qemu_img.QemuImgError, KeyError, ValueError):
        need = virtual_size
    free = disk_room.free_bytes(directory)
    if need > free:
        fix = ("free at least %s on the file system holding %s (or choose a dest on another file system), then "
               "run again" % (disk_room.human(need - free), directory))
    else:
        fix = "enough space is free again now: keep it free (stop what else writes there) and run again"
    return ("converting %s to %s ran out of space: the file system holding %s filled up while the disk was "
            "written, after the free-space check had passed (something else wrote there meanwhile). Nothing was "
            "left at %s (the partial file was removed). The converted disk needs %s (%d bytes, qemu-img measure) "
            "and the file system has %s (%d bytes) free now. Fix: %s"
            % (_qemu_img.describe_source(source), dest_format, directory, dest, disk_room.human(need), need,
               disk_room.human(free), free, fix))


def _convert(module, source, fmt, fingerprint, known_sha256, virtual_size):
    """Convert into .part, verify, flush, rename; returns the new sidecar state."""
    params = module.params
    dest, dest_format, verify = params["dest"], params["dest_format"], params["verify"]
    part = state_store.part_path(dest)
    # Before the progress writer: its orphan watch stops the module with SIGTERM.
    previous = raise_on_sigterm()
    progress = ProgressWriter(params["progress_file"]) if params["progress_file"] else None

    def end(stage, done):
        """The job's last sample and SIGTERM's handler back as it was, however the conversion ends."""
        if progress:
            progress.update(stage, done, virtual_size)
            progress.close()
        signal.signal(signal.SIGTERM, previous)
    hashed = {}

    def hash_source():
        try:
            hashed["sha256"] = file_sha256(fingerprint["path"], fingerprint["offset"], fingerprint["size"])
        except Exception as exc:  # reported by the main thread
            hashed["error"] = exc

    hasher = None
    if not known_sha256:
        # The second core hashes the source bytes while qemu-img decodes them; both hit the page cache.
        hasher = threading.Thread(target=hash_source, name="source-sha256", daemon=True)
        hasher.start()
    done = 0
    try:
        _remove(part)
        if progress:
            progress.update("convert", 0, virtual_size)

        def on_progress(fraction):
            if progress:
                progress.update("convert", int(fraction * virtual_size), virtual_size)

        finished = threading.Event()
        writer = threading.Thread(target=_write_back_until, args=(part, finished), name="write-back",
                                  daemon=True)
        writer.start()
        try:
            throttle = ["-r", str(params["rate_limit"])] if params["rate_limit"] else None
            _qemu_img.convert(source, fmt, part, dest_format, on_progress=on_progress, extra_options=throttle)
        finally:
            finished.set()
            writer.join()
        done = virtual_size
        if progress:
            progress.update("verify", virtual_size, virtual_size)
        checked = _qemu_img.check(part, dest_format)
        if not checked["ok"]:
            raise _Failure("qemu-img check found %d corruptions in the converted image %s; the source may be "
                           "damaged: %s" % (checked["corruptions"], part, checked["raw"]))
        if verify == "compare":
            same, message = _qemu_img.compare(source, fmt, part, dest_format)
            if not same:
                raise _Failure("the converted image differs from the source %s: %s"
                               % (_qemu_img.describe_source(source), message))
        flushed = {}

        def flush():
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
            except OSError as exc:
                flushed["error"] = exc
            finally:
                os.close(fd)

        # Writing back to disk and hashing from the page cache overlap well.
        flusher = threading.Thread(target=flush, name="fsync", daemon=True)
        flusher.start()
        digest = content_digest(part, dest_format) if verify != "none" else None
        flusher.join()
        if "error" in flushed:
            raise flushed["error"]
        if hasher is not None:
            hasher.join()
            if "error" in hashed:
                raise _Failure("could not read the source to hash it: %s" % hashed["error"])
        # The old sidecar must not outlive the file it described.
        state_store.remove_sidecar(dest)
        os.replace(part, dest)
        state_store.fsync_directory(os.path.dirname(dest))
    except BaseException as exc:
        _remove(part)
        end("failed", done)
        if _out_of_space(exc):
            module.fail_json(msg=_no_space_message(source, fmt, dest, dest_format, virtual_size))
        if isinstance(exc, (_qemu_img.QemuImgError, _Failure, Interrupted, OSError)):
            module.fail_json(msg="converting %s to %s failed, nothing was left at %s: %s"
                                 % (_qemu_img.describe_source(source), dest_format, dest, exc))
        raise
    # The disk is in place: a stop now would leave it without its sidecar, so finish first (milliseconds).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    state = {
        "source": fingerprint,
        "source_sha256": known_sha256.lower() if known_sha256 else hashed.get("sha256"),
        "content_digest": digest,
        "dest_format": dest_format,
        "virtual_size": virtual_size,
        "dest": state_store.dest_fingerprint(dest),
        "qemu_img_version": _qemu_img.qemu_img_version(),
        "verify": verify,
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        state_store.write_sidecar(dest, state)
    except OSError as exc:
        # Without its sidecar the disk would be refused by the next run: take it back out.
        _remove(dest)
        end("failed", virtual_size)
        module.fail_json(msg=_no_space_message(source, fmt, dest, dest_format, virtual_size) if _out_of_space(exc)
                         else "writing the sidecar of %s failed, the converted disk was removed again: %s"
                         % (dest, exc))
    end("done", virtual_size)
    return state


def _present(module, dest):
    params = module.params
    source, fmt, fingerprint, known_sha256 = _source(module)
    if os.path.realpath(dest) == fingerprint["path"]:
        module.fail_json(msg="dest %s is the source itself; choose another dest" % dest)
    if not os.path.isdir(os.path.dirname(dest)) and not module.check_mode:
        module.fail_json(msg="the directory of dest %s does not exist; create it (or the storage pool) first"
                             % dest)
    current = state_store.read_sidecar(dest)
    reason = state_store.stale_reason(current, fingerprint, dest, params["dest_format"])
    written = state_store.dest_written_since(current, dest)
    if reason is None and not params["force"]:
        note = ("converted earlier and written since (by the guest): kept as it is" if written
                else "up to date (sidecar matches source and dest)")
        module.exit_json(**_result_from_state(dest, current, note, False))
    if written and not params["force"]:
        module.fail_json(msg="dest %s must be converted again (%s) but it has been written since its conversion, "
                             "most likely by the migrated guest; set force=true to replace it and lose those "
                             "writes, or choose another dest" % (dest, reason))
    if params["force"]:
        reason = "force=true" if reason is None else "%s (force=true)" % reason
    elif current is None and os.path.lexists(dest):
        module.fail_json(msg="dest %s exists but has no v2kvm sidecar (%s), so it was not made by disk_convert "
                             "or its conversion did not finish; remove it or set force=true to replace it"
                             % (dest, state_store.sidecar_path(dest)))
    try:
        virtual_size = int(_qemu_img.info(source, fmt)["virtual-size"])
    except _qemu_img.QemuImgError as exc:
        module.fail_json(msg="cannot read the source image: %s" % exc)
    if os.path.isdir(os.path.dirname(dest)):
        try:
            short = disk_room.shortfall(source, fmt, dest, params["dest_format"], virtual_size,
                                        reclaimable=state_store.part_path(dest))
        except _qemu_img.QemuImgError as exc:
            module.fail_json(msg="cannot tell whether dest %s has room: %s" % (dest, exc))
        if short:
            module.fail_json(msg=short)
    before = state_store.summary(current)
    if module.check_mode:
        planned = {"source": fingerprint, "source_sha256": known_sha256, "dest_format": params["dest_format"],
                   "virtual_size": virtual_size, "content_digest": None,
                   "qemu_img_version": _qemu_img.qemu_img_version()}
        result = {"changed": True, "dest": dest, "dest_format": params["dest_format"],
                  "virtual_size": virtual_size, "actual_size": None, "source_fingerprint": fingerprint,
                  "source_sha256": known_sha256, "content_digest": None,
                  "qemu_img_version": planned["qemu_img_version"], "reason": reason}
        if module._diff:
            result["diff"] = {"before": before, "after": state_store.summary(planned)}
        module.exit_json(**result)
    state = _convert(module, source, fmt, fingerprint, known_sha256, virtual_size)
    result = _result_from_state(dest, state, reason, True)
    if module._diff:
        result["diff"] = {"before": before, "after": state_store.summary(state)}
    module.exit_json(**result)


def _own(module, dest):
    """Hold the lock beside dest for the rest of the run (released at exit), so a module left running by a
    killed run never works on the same .part: it is stopped, or waited for (see _target_lock). Check mode
    writes nothing and takes no lock."""
    if not module.check_mode and os.path.isdir(os.path.dirname(dest)):
        target_lock.own(module, target_lock.lock_path(dest), "conversion to %s" % dest, ProgressWriter)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            disk=dict(type="dict"),
            container=dict(type="path"),
            src=dict(type="path"),
            src_format=dict(type="str", default="vmdk"),
            dest=dict(type="path", required=True),
            dest_format=dict(type="str", choices=["qcow2", "raw"], default="qcow2"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force=dict(type="bool", default=False),
            progress_file=dict(type="path"),
            rate_limit=dict(type="int", default=0),
            verify=dict(type="str", choices=["none", "digest", "compare"], default="digest"),
        ),
        mutually_exclusive=[("disk", "src")],
        required_if=[("state", "present", ("disk", "src"), True)],
        supports_check_mode=True,
    )
    dest = os.path.abspath(module.params["dest"])
    module.params["dest"] = dest
    _own(module, dest)
    if module.params["state"] == "absent":
        _absent(module, dest)
    _present(module, dest)


if __name__ == "__main__":
    main()
