# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One disk conversion, made safe to interrupt: the result appears under its final name complete or not at all.

qemu-img converts into ``.NAME.part`` while a write-back thread pushes its pages to disk and another
thread hashes the source; the part is checked (and compared, with verify=compare), flushed while its
content digest is read from the page cache, renamed to the final name, and its sidecar written. Any failure
or SIGTERM before the rename removes the part; after the rename SIGTERM is ignored, so the disk always gets
its sidecar (milliseconds). The whole run is one ProgressJob: stage ``convert``, then ``verify``, then a
final ``done`` or ``failed``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store
from ansible_collections.v2kvm.migrate.plugins.module_utils import _disk_room as disk_room
from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils._content_digest import content_digest, file_sha256
from ansible_collections.v2kvm.migrate.plugins.module_utils._convert_source import ConvertError, Source
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import Interrupted, ProgressJob


class Plan(NamedTuple):
    source: Source
    virtual_size: int
    dest: str
    dest_format: str
    verify: str  # none, digest or compare
    rate_limit: int = 0  # bytes per second, 0 for no limit
    progress_file: str | None = None


class _Failure(Exception):
    """The result was made but is not right (corrupt, different from the source, source unreadable)."""


class _SidecarNotWritten(Exception):
    def __init__(self, cause: OSError):
        super().__init__(str(cause))
        self.cause = cause


def convert(plan: Plan) -> dict:
    """Convert, verify, flush, rename and record; returns the new sidecar state. Raises ConvertError after
    its clean-up (no part, no dest without sidecar) once SIGTERM's previous handler is back."""
    try:
        with ProgressJob(plan.progress_file) as job:
            return _convert_in(job, plan)
    except BaseException as exc:
        message = _failure_message(plan, exc)
        if message is None:
            raise
        raise ConvertError(message) from exc


def _convert_in(job: ProgressJob, plan: Plan) -> dict:
    dest, size = plan.dest, plan.virtual_size
    part = state_store.part_path(dest)
    hasher = None if plan.source.known_sha256 else _SourceHasher(plan.source.fingerprint)
    done = 0
    try:
        state_store.remove_file(part)
        _qemu_img_convert(plan, part, job.bytes_of("convert", size))
        done = size
        job.update("verify", size, size)
        _check(plan, part)
        digest = _flush_and_digest(part, plan.dest_format, plan.verify)
        source_sha256 = plan.source.known_sha256.lower() if hasher is None else hasher.result()
        # The old sidecar must not outlive the file it described.
        state_store.remove_sidecar(dest)
        os.replace(part, dest)
        state_store.fsync_directory(os.path.dirname(dest))
    except BaseException:
        state_store.remove_file(part)
        job.finish(False, done, size)
        raise
    # The disk is in place: a stop now would leave it without its sidecar, so finish first (milliseconds).
    job.ignore_stop()
    state = _made_state(plan, source_sha256, digest)
    try:
        state_store.write_sidecar(dest, state)
    except OSError as exc:
        # Without its sidecar the disk would be refused by the next run: take it back out.
        state_store.remove_file(dest)
        job.finish(False, size, size)
        raise _SidecarNotWritten(exc) from exc
    job.finish(True, size, size)
    return state


def _qemu_img_convert(plan: Plan, part: str, on_progress) -> None:
    """qemu-img convert into ``part`` while a second thread writes its pages back to disk."""
    finished = threading.Event()
    writer = threading.Thread(target=_write_back_until, args=(part, finished), name="write-back", daemon=True)
    writer.start()
    try:
        throttle = ["-r", str(plan.rate_limit)] if plan.rate_limit else None
        _qemu_img.convert(plan.source.image, plan.source.fmt, part, plan.dest_format, on_progress=on_progress,
                          extra_options=throttle)
    finally:
        finished.set()
        writer.join()


def _write_back_until(path: str, finished: threading.Event, every: float = 0.5) -> None:
    """Flush ``path`` to disk periodically until ``finished`` is set.

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


def _check(plan: Plan, part: str) -> None:
    """qemu-img check (metadata, milliseconds) and, with verify=compare, qemu-img compare with the source."""
    checked = _qemu_img.check(part, plan.dest_format)
    if not checked["ok"]:
        raise _Failure("qemu-img check found %d corruptions in the converted image %s; the source may be "
                       "damaged: %s" % (checked["corruptions"], part, checked["raw"]))
    if plan.verify == "compare":
        same, message = _qemu_img.compare(plan.source.image, plan.source.fmt, part, plan.dest_format)
        if not same:
            raise _Failure("the converted image differs from the source %s: %s"
                           % (_qemu_img.describe_source(plan.source.image), message))


def _flush_and_digest(part: str, dest_format: str, verify: str) -> str | None:
    """fsync ``part`` and, unless verify=none, its content digest: writing back to disk and hashing from the
    page cache overlap well."""
    flushed = {}

    def flush():
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as exc:
            flushed["error"] = exc
        finally:
            os.close(fd)

    flusher = threading.Thread(target=flush, name="fsync", daemon=True)
    flusher.start()
    digest = content_digest(part, dest_format) if verify != "none" else None
    flusher.join()
    if "error" in flushed:
        raise flushed["error"]
    return digest


class _SourceHasher:
    """sha256 of the source bytes on a second core while qemu-img decodes them; both hit the page cache."""

    def __init__(self, fingerprint: dict):
        self._fingerprint = fingerprint
        self._outcome = {}
        self._thread = threading.Thread(target=self._hash, name="source-sha256", daemon=True)
        self._thread.start()

    def _hash(self):
        try:
            self._outcome["sha256"] = file_sha256(self._fingerprint["path"], self._fingerprint["offset"],
                                                  self._fingerprint["size"])
        except Exception as exc:  # reported by the main thread
            self._outcome["error"] = exc

    def result(self) -> str:
        self._thread.join()
        if "error" in self._outcome:
            raise _Failure("could not read the source to hash it: %s" % self._outcome["error"])
        return self._outcome["sha256"]


def _made_state(plan: Plan, source_sha256: str | None, digest: str | None) -> dict:
    """The sidecar of the disk just renamed into place."""
    return {
        "source": plan.source.fingerprint,
        "source_sha256": source_sha256,
        "content_digest": digest,
        "dest_format": plan.dest_format,
        "virtual_size": plan.virtual_size,
        "dest": state_store.dest_fingerprint(plan.dest),
        "qemu_img_version": _qemu_img.qemu_img_version(),
        "verify": plan.verify,
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _failure_message(plan: Plan, exc: BaseException) -> str | None:
    """What the module says about a conversion that ended by ``exc``; None for an exception it does not own
    (a bug, SystemExit), which goes on up."""
    source, dest = plan.source, plan.dest
    if isinstance(exc, _SidecarNotWritten):
        if disk_room.out_of_space(exc.cause):
            return disk_room.filled_up(source.image, source.fmt, dest, plan.dest_format, plan.virtual_size)
        return "writing the sidecar of %s failed, the converted disk was removed again: %s" % (dest, exc.cause)
    if disk_room.out_of_space(exc):
        return disk_room.filled_up(source.image, source.fmt, dest, plan.dest_format, plan.virtual_size)
    if isinstance(exc, (_qemu_img.QemuImgError, _Failure, Interrupted, OSError)):
        return ("converting %s to %s failed, nothing was left at %s: %s"
                % (_qemu_img.describe_source(source.image), plan.dest_format, dest, exc))
    return None
