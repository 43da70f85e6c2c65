# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP downloads of NFC lease files and datastore files, resumable with Range.

A download goes to ``DEST.part``; a later run continues where it stopped (the server must answer
206 with the matching Content-Range, else it starts over) and the sha1 of the whole file is
computed on the way (the kept prefix is hashed first), so a lease manifest can be checked without
reading the file twice. Only a complete file, flushed to disk, is renamed to DEST. A connection that
breaks or stalls is opened again and the download resumed from the bytes kept (``retries``, with a
growing wait in between); a full file system is not retried: its error names the file system, the
bytes still to come, and that the ``.part`` is kept so the next run resumes from it.

The receive loop is the hot path of an export. It uses ``http.client`` (as pyVmomi does, with the
same TLS trust store) because its ``readinto`` fills preallocated buffers: no allocation and no copy
per block, where a ``requests`` stream allocates and copies every chunk several times. While the
next buffer is received, one thread hashes the filled ones and another writes them (hashlib and
os.pwrite release the GIL), aligned blocks with O_DIRECT (see ``_Sink``), so hashing and the flush
before the rename cost little wall time (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import mmap
import os
import queue
import re
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_room import free_bytes, human
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import VsphereError

CHUNK = 4 * 1024 * 1024
BUFFERS = 6
ALIGN = 4096  # O_DIRECT: offsets, lengths and memory aligned to the block size (4096 covers 512 too)
WRITEBACK_EVERY = 64 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Cancelled(Exception):
    pass


class TransferBroken(VsphereError):
    """The connection broke or stalled mid-transfer; the .part file is kept for a Range resume."""


class RangeNotServed(VsphereError):
    """The server answered a byte-range request with the whole file."""


class _LocalWriteFailed(Exception):
    """Writing the received bytes failed (full disk, ...): not a network problem, retrying will not help."""


class Session:
    """HTTPS GETs carrying the vSphere session cookie, with one keep-alive connection per thread and host."""

    def __init__(self, cookie, verify):
        self.cookie = cookie
        self.verify = verify
        # The trust store pyVmomi's login used (see _vsphere_conn.connect), so both agree on a certificate.
        self.context = ssl.create_default_context() if verify else ssl._create_unverified_context()  # noqa: S323
        self._idle = {}
        self._lock = threading.Lock()

    def get(self, url, headers=None, timeout=60):
        """An open http.client response; the caller reads it and calls ``release(response)``."""
        parts = urlsplit(url)
        key = (threading.get_ident(), parts.scheme, parts.hostname, parts.port)
        target = parts.path + ("?" + parts.query if parts.query else "")
        headers = dict(headers or {}, Cookie=self.cookie)
        with self._lock:
            conn = self._idle.pop(key, None)
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request("GET", target, headers=headers)
                return self._tag(conn.getresponse(), conn, key)
            except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLEOFError):
                conn.close()  # the server (or a proxy) dropped the idle connection: a new one below
        if parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                               context=self.context)
        try:
            conn.request("GET", target, headers=headers)
            return self._tag(conn.getresponse(), conn, key)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _tag(resp, conn, key):
        resp.v2kvm_conn, resp.v2kvm_key = conn, key
        return resp

    def release(self, resp):
        """Keep the connection for the next request when the body was read to the end, else close it."""
        conn = resp.v2kvm_conn
        if resp.isclosed() and not resp.will_close:
            with self._lock:
                old = self._idle.pop(resp.v2kvm_key, None)
                self._idle[resp.v2kvm_key] = conn
            if old is not None and old is not conn:
                old.close()
        else:
            resp.close()
            conn.close()

    def close(self):
        with self._lock:
            idle, self._idle = list(self._idle.values()), {}
        for conn in idle:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def new_session(conn):
    return Session(conn.cookie, conn.verify)


def _check_status(resp, url_for_humans):
    if resp.status in (401, 403):
        raise VsphereError("the server refused the download of %s (HTTP %d)" % (url_for_humans, resp.status),
                           "the account needs the Datastore.Browse / VirtualMachine.Provisioning privileges")
    if resp.status == 404:
        raise VsphereError("%s does not exist on the server (HTTP 404)" % url_for_humans,
                           "the lease or file went away; run again to start a new export")
    if resp.status >= 400:
        raise VsphereError("download of %s failed with HTTP %d" % (url_for_humans, resp.status),
                           "retry; a run resumes where this one stopped")


def _local(func, *args):
    try:
        return func(*args)
    except OSError as exc:
        raise _LocalWriteFailed(exc) from None


def _write_all(fd, view, offset):
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _start_writeback(fd, offset, length):
    # On Linux, POSIX_FADV_DONTNEED starts the write-back of the dirty pages of the range without waiting
    # for it (pages still being written stay cached), which spreads the final fsync over the download.
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _open_direct(path):
    """A second descriptor of ``path`` that bypasses the page cache, or None where O_DIRECT is not supported."""
    if not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError:  # tmpfs and some network file systems refuse it
        return None


class _Sink:
    """Hashes (one thread) and writes (another) each filled buffer while the caller receives the next one.

    Aligned blocks go through an O_DIRECT descriptor: no copy into the page cache and nothing left to flush,
    and a multi-GB disk image does not push the guests' data out of the host's cache. The rest (an unaligned
    first or last block, or a file system without O_DIRECT) is written through the page cache, whose
    write-back is started every WRITEBACK_EVERY bytes so the final fsync finds little to do."""

    def __init__(self, fd, direct_fd, sha1):
        self.fd, self.direct_fd, self.sha1 = fd, direct_fd, sha1
        self.maps = [mmap.mmap(-1, CHUNK) for _buffer in range(BUFFERS)]  # page-aligned, as O_DIRECT wants
        self.views = [memoryview(buffer) for buffer in self.maps]
        self.free = queue.SimpleQueue()
        for index in range(BUFFERS):
            self.free.put(index)
        self.to_hash, self.to_write = queue.SimpleQueue(), queue.SimpleQueue()
        self.pending = [0] * BUFFERS
        self.lock = threading.Lock()
        self.failures = []
        self.buffered_from = None
        self.threads = [threading.Thread(target=self._hash, name="download-hash", daemon=True),
                        threading.Thread(target=self._write, name="download-write", daemon=True)]
        for thread in self.threads:
            thread.start()

    def put(self, index, count, position):
        self.pending[index] = 2
        self.to_hash.put((index, count))
        self.to_write.put((index, count, position))

    def _done(self, index):
        with self.lock:
            self.pending[index] -= 1
            last = not self.pending[index]
        if last:
            self.free.put(index)

    def _hash(self):
        while True:
            item = self.to_hash.get()
            if item is None:
                return
            index, count = item
            try:
                if not self.failures:
                    self.sha1.update(self.views[index][:count])
            except BaseException as exc:  # re-raised in the receiving thread
                self.failures.append(exc)
            finally:
                self._done(index)

    def _write(self):
        while True:
            item = self.to_write.get()
            if item is None:
                return
            index, count, position = item
            try:
                if not self.failures:
                    self._write_block(self.views[index][:count], position)
            except OSError as exc:
                self.failures.append(_LocalWriteFailed(exc))
            except BaseException as exc:
                self.failures.append(exc)
            finally:
                self._done(index)

    def _write_block(self, block, position):
        if self.direct_fd is not None and not position % ALIGN and not len(block) % ALIGN:
            try:
                _write_all(self.direct_fd, block, position)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                os.close(self.direct_fd)  # accepted at open, refused at write: the page cache it is
                self.direct_fd = None
        _write_all(self.fd, block, position)
        end = position + len(block)
        if self.buffered_from is None:
            self.buffered_from = position
        elif end - self.buffered_from >= WRITEBACK_EVERY:
            _start_writeback(self.fd, self.buffered_from, end - self.buffered_from)
            self.buffered_from = end

    def close(self):
        self.to_hash.put(None)
        self.to_write.put(None)
        for thread in self.threads:
            thread.join()
        if self.direct_fd is not None:
            os.close(self.direct_fd)


def _receive(resp, part, fd, offset, sha1, on_bytes, cancel):
    """Read ``resp`` to its end into ``part`` (open as ``fd``) from ``offset``, hashing it into ``sha1``;
    returns the bytes received."""
    sink = _Sink(fd, _open_direct(part), sha1)
    received, position = 0, offset
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            index = sink.free.get()
            if sink.failures:
                break
            view = sink.views[index]
            if position % ALIGN:  # a resumed download: one short block, then aligned ones
                view = view[:ALIGN - position % ALIGN]
            count = resp.readinto(view)
            if not count:
                sink.free.put(index)
                break
            sink.put(index, count, position)
            received += count
            position += count
            if on_bytes:
                on_bytes(count)
    finally:
        sink.close()
    if sink.failures:
        raise sink.failures[0]
    return received


def _hash_prefix(path, length, sha1):
    view = memoryview(bytearray(CHUNK))
    with open(path, "rb", buffering=0) as handle:
        left = length
        while left:
            count = handle.readinto(view[:min(CHUNK, left)])
            if not count:
                break
            sha1.update(view[:count])
            left -= count


def _announced_length(resp):
    try:
        return int(resp.getheader("Content-Length"))
    except (TypeError, ValueError):
        return None


def _range_header(start, length):
    return {"Range": "bytes=%d-%d" % (start, start + length - 1)}


def _check_range(resp, label, error, fix):
    """Raise unless ``resp`` is the 206 answer to a byte-range request."""
    if resp.status != 206:
        _check_status(resp, label)
        raise error("the server ignored the byte range of %s (HTTP %d)" % (label, resp.status), fix)


@contextlib.contextmanager
def _response(session, url, headers, timeout, *, label, what, fix, broken=TransferBroken):
    """The open response of a GET of ``url`` for the ``with`` block to read: released for the next request
    afterwards, closed with its connection when the block fails. A stall or a broken connection, while
    asking or in the block, raises ``broken`` worded "<what> stalled ..." / "<what> broke off ..." with the
    caller's ``fix``; a refused certificate raises VsphereError."""
    try:
        resp = session.get(url, headers=headers, timeout=timeout)
        try:
            yield resp
        except BaseException:
            resp.close()
            resp.v2kvm_conn.close()
            raise
        session.release(resp)
    except (socket.timeout, TimeoutError):
        raise broken("%s stalled for more than %s s" % (what, timeout), fix) from None
    except ssl.SSLCertVerificationError:
        raise VsphereError("TLS verification failed for the download of %s" % label,
                           "trust the vCenter/ESXi CA certificate, or set validate_certs: false for a lab") from None
    except (OSError, http.client.HTTPException) as exc:
        raise broken("%s broke off (%s)" % (what, type(exc).__name__), fix) from None


def _receive_part(resp, part, have, sha1, on_bytes, cancel, label):
    """Write the body of ``resp`` into ``part`` from ``have``, flushed to disk; returns the bytes received."""
    fd = _local(os.open, part, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        _local(os.ftruncate, fd, have)
        announced = _announced_length(resp)
        fetched = _receive(resp, part, fd, have, sha1, on_bytes, cancel)
        if announced is not None and fetched < announced:
            raise TransferBroken("the download of %s broke off after %d of %d bytes" % (
                label, have + fetched, have + announced),
                "run again: it resumes from the %d bytes already received" % (have + fetched))
        _local(os.fsync, fd)
    finally:
        os.close(fd)
    return fetched


def _size_or_zero(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _bytes(count):
    """'8.0 MiB (8388608 bytes)', or '512 bytes' below a KiB."""
    return "%s (%d bytes)" % (human(count), count) if count >= 1024 else human(count)


def _write_failed(exc, part, label, expected_size):
    """The VsphereError for a local write that failed: for a full file system, which one, how much is still to
    come and that the .part stays for the next run to resume."""
    kept = _size_or_zero(part)
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return VsphereError("writing %s failed: %s" % (part, exc.strerror or exc),
                            "free space in (or fix the permissions of) the dest directory, then run again: "
                            "it resumes from the bytes already written")
    directory = os.path.dirname(os.path.abspath(part))
    free = free_bytes(directory)
    left = max(0, expected_size - kept) if expected_size is not None else None
    still = (", %s still to come" % _bytes(left)) if left is not None else ""
    more = ("at least %s more (or choose a dest on a file system with room)" % human(left - free)
            if left is not None and left > free else "room for the rest of the disk")
    return VsphereError(
        "the file system holding %s ran out of space (%s) while %s was downloaded: %s are written%s, and %s "
        "free now" % (directory, exc.strerror or os.strerror(exc.errno), label, _bytes(kept), still, _bytes(free)),
        "free space on the file system holding %s: %s, then run again; the partial download %s is kept on "
        "purpose so the next run resumes from its %d bytes (delete it to start over; the migrate_vm role's "
        "rollback removes it unless migrate_vm_vsphere_keep_export is true)" % (
            directory, more, os.path.basename(part), kept))


def download(session, url, dest, *, label, expected_size=None, on_bytes=None, timeout=60, cancel=None,
             retries=1, backoff=1.0):
    """Download ``url`` to ``dest`` resuming ``dest.part``; returns (sha1 hex, size, bytes fetched now).

    A broken or stalled transfer (TransferBroken) is tried again, ``retries`` attempts in all, each one
    resuming with Range from the bytes kept, after ``backoff``, 2 x ``backoff``, ... seconds (at most 30)."""
    part = dest + ".part"
    fetched, attempt = 0, 0
    while True:
        attempt += 1
        before = _size_or_zero(part)
        try:
            sha1, size, now = _download_once(session, url, dest, part, label=label, expected_size=expected_size,
                                             on_bytes=on_bytes, timeout=timeout, cancel=cancel)
            return sha1, size, fetched + now
        except TransferBroken as exc:
            fetched += max(0, _size_or_zero(part) - before)
            if attempt >= retries or (cancel is not None and cancel.is_set()):
                if attempt == 1:
                    raise
                raise TransferBroken("%s (%d attempts)" % (exc.problem, attempt), exc.fix) from None
        delay = min(30.0, backoff * 2 ** (attempt - 1))
        if cancel is not None:
            if cancel.wait(delay):
                raise Cancelled("cancelled")
        else:
            time.sleep(delay)


def _download_once(session, url, dest, part, *, label, expected_size, on_bytes, timeout, cancel):
    sha1 = hashlib.sha1()  # noqa: S324 - the NFC lease manifest is sha1; this checks it, not a security hash
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if expected_size is not None and have > expected_size:
        have = 0
    if have:
        _hash_prefix(part, have, sha1)
        if on_bytes:
            on_bytes(have, resumed=True)
    fetched = 0
    try:
        if expected_size is None or have != expected_size:
            with _response(session, url, {"Range": "bytes=%d-" % have} if have else None, timeout, label=label,
                           what="the download of %s" % label,
                           fix="run again: it resumes from the bytes already received") as resp:
                if have and resp.status == 416:
                    resp.read()  # nothing left to fetch
                else:
                    if have and resp.status == 200:  # the server ignored Range: start over
                        have = 0
                        sha1 = hashlib.sha1()  # noqa: S324
                    elif have and resp.status == 206:
                        match = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
                        if not match or int(match.group(1)) != have:
                            raise VsphereError("the server resumed %s at the wrong offset (%s)" % (
                                label, resp.getheader("Content-Range")), "remove %s and run again" % part)
                    else:
                        _check_status(resp, label)
                    fetched = _receive_part(resp, part, have, sha1, on_bytes, cancel, label)
    except _LocalWriteFailed as exc:
        raise _write_failed(exc.args[0], part, label, expected_size) from None
    size = os.path.getsize(part)
    if expected_size is not None and size < expected_size:
        # An answer without Content-Length that ended early (a connection closed mid-body): resumable.
        raise TransferBroken("the download of %s ended after %d of %d bytes" % (label, size, expected_size),
                             "run again: it resumes from the bytes already received")
    if expected_size is not None and size != expected_size:
        raise VsphereError("%s has %d bytes, the server announced %d" % (label, size, expected_size),
                           "run again to resume; if it persists remove %s" % part)
    os.replace(part, dest)
    return sha1.hexdigest(), size, fetched


def fetch_range(session, url, start, length, *, label, timeout=60):
    """The ``length`` bytes of ``url`` from ``start`` (a 206 answer), as bytes."""
    with _response(session, url, _range_header(start, length), timeout, label=label, what="reading %s" % label,
                   fix="run again") as resp:
        _check_range(resp, label, RangeNotServed,
                     "this server cannot resume downloads; remove the .part file and run again")
        return resp.read()


def read_ranges(session, url, ranges, handle, *, label, on_bytes=None, timeout=60):
    """Copy each (start, length) of ``url`` into the open file ``handle`` at the same offset; returns bytes copied.

    A local write that fails (a full file system) is reported as such, with what is left to copy; the sync
    record is not updated then, so the next run copies the same areas again."""
    try:
        return _read_ranges(session, url, ranges, handle, label=label, on_bytes=on_bytes, timeout=timeout)
    except _LocalWriteFailed as exc:
        error = exc.args[0]
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise VsphereError("writing %s failed: %s" % (handle.name, error.strerror or error),
                               "fix the permissions or the health of the dest directory, then run again: the sync "
                               "restarts from the last recorded changeId") from None
        directory = os.path.dirname(os.path.abspath(handle.name))
        left, free = sum(length for unused, length in ranges) - exc.copied, free_bytes(directory)
        more = ("at least %s more (or choose a dest on a file system with room)" % human(left - free)
                if left > free else "room for the changed areas")
        raise VsphereError(
            "the file system holding %s ran out of space (%s) while the changed areas of %s were written: %s "
            "written, %s still to come, and %s free now" % (directory, error.strerror or os.strerror(error.errno),
                                                            label, _bytes(exc.copied), _bytes(left), _bytes(free)),
            "free space on the file system holding %s: %s, then run again; the sync restarts from the last "
            "recorded changeId (a first sync copies everything again)" % (directory, more)) from None


def _read_ranges(session, url, ranges, handle, *, label, on_bytes, timeout):
    copied = 0
    view = memoryview(bytearray(1024 * 1024))
    fd = handle.fileno()
    handle.flush()
    for start, length in ranges:
        # Not TransferBroken: a warm sync does not resume a range, it restarts from the recorded changeId.
        with _response(session, url, _range_header(start, length), timeout, label=label,
                       what="reading changed areas of %s" % label,
                       fix="run again: the sync restarts from the last recorded changeId", broken=VsphereError) as resp:
            _check_range(resp, label, VsphereError, "this server cannot serve changed areas; use a full copy")
            position, end = start, start + length
            while position < end:
                count = resp.readinto(view[:min(len(view), end - position)])
                if not count:
                    raise TransferBroken("the server ended the range of %s early" % label, "run again")
                try:
                    _write_all(fd, view[:count], position)
                except OSError as exc:  # not a network problem: past _response's handler as such
                    failed = _LocalWriteFailed(exc)
                    failed.copied = copied
                    raise failed from None
                position += count
                copied += count
                if on_bytes:
                    on_bytes(count)
            resp.read()  # the (empty) rest, so the connection can serve the next range
    return copied
