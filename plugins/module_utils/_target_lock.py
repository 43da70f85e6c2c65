# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One owner per target object: an flock on a lock file beside the object.

A module that writes a target object (a converted disk, a VM's export work dir, a domain it boots or
migrates) holds ``.<name>.v2kvm.lock`` in the object's directory for as long as it works on it. The file
holds the owner's pid and the heartbeat file its controller rewrites (``<progress file>.alive``, see
``_orphan_watch``). A killed ``ansible-playbook`` leaves its background modules running on the target;
a re-run then finds the lock held and:

- when the holder has the same heartbeat file as this run (the same job: the role names progress files
  after the VM), the holder is the module the killed run left behind: it is stopped at once (SIGTERM, its
  own clean-up runs; SIGKILL for it and its children after a grace period) and this run continues;
- otherwise the holder may be a live run on another controller: this run waits, reporting it, and takes
  over only once the holder's heartbeat has been silent for ``silence`` seconds (its controller is gone).
  A holder without a heartbeat (run the plain way, whose controller dies with it) is waited for.

The lock goes with its owner: ``release()`` (also at exit) removes the file while still holding it, and the
kernel drops an flock when its process dies, so a SIGKILLed owner leaves at most a stale, unlocked file that
the next owner takes and removes. An acquirer checks, once it holds the lock, that the file it locked is
still the one at the path (a releaser may have removed it meanwhile), so two owners never coexist.

Plain Python, free of Ansible imports.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import re
import signal
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._orphan_watch import heartbeat_path

SUFFIX = ".v2kvm.lock"
DEFAULT_SILENCE = 30.0  # seconds of heartbeat silence after which a holder's controller counts as gone
DEFAULT_GRACE = 10.0  # seconds a stopped holder gets for its clean-up before SIGKILL


class LockBusy(Exception):
    """The holder could not be stopped (it outlived SIGTERM and SIGKILL)."""


def lock_path(target: str) -> str:
    """``.<name>.v2kvm.lock`` in the directory of ``target`` (a file or a directory)."""
    directory, name = os.path.split(os.path.abspath(target).rstrip("/") or "/")
    return os.path.join(directory, ".%s%s" % (name, SUFFIX))


def state_lock_path(kind: str, name: str, base: str | None = None) -> str:
    """A lock for an object that is not a file (a domain): under ``~/.ansible/v2kvm/locks`` of the user
    running the module."""
    base = base or os.path.join(os.path.expanduser("~"), ".ansible", "v2kvm", "locks")
    os.makedirs(base, mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", lambda m: "%%%02X" % ord(m.group(0)), "%s-%s" % (kind, name))
    return os.path.join(base, ".%s%s" % (safe, SUFFIX))


def _signature(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _flock_holder(fd) -> int | None:
    """The pid /proc/locks names as holding an flock on ``fd``'s file, or None (not Linux, not listed)."""
    st = os.fstat(fd)
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF" (a waiter's line starts with "1: ->")
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return int(fields[4])
        except ValueError:
            continue
    return None


def _children(pid):
    """Every descendant of ``pid`` (from /proc), so a SIGKILLed module does not leave qemu-img writing."""
    parents = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                stat = fh.read()
        except OSError:
            continue
        try:
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        except (IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class TargetLock:
    """TargetLock(path, heartbeat=...).acquire() ... .release().

    ``on_wait(holder, waited)`` is called at every poll while another owner is waited for (``holder``:
    pid, heartbeat, what, started). After ``acquire()``, ``taken_over`` describes a holder that was stopped
    (None when the lock was free or its holder finished on its own).
    """

    def __init__(self, path, heartbeat=None, what=None, silence=DEFAULT_SILENCE, grace=DEFAULT_GRACE,
                 poll=0.25, on_wait=None, clock=time.monotonic, may_stop=None):
        self.path = path
        self.heartbeat = os.path.abspath(heartbeat) if heartbeat else None
        self.what = what
        self.silence = silence
        self.grace = grace
        self.poll = poll
        self.on_wait = on_wait
        self.taken_over = None
        self.may_stop = may_stop  # may_stop(holder) false: never stop that holder, wait for it
        self._clock = clock
        self._fd = None
        self._pid = None
        self._seen = None  # (holder pid, heartbeat signature) last looked at
        self._changed_at = None

    # -- public -----------------------------------------------------------------------------------

    def acquire(self) -> TargetLock:
        started = self._clock()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                try:
                    self._contend(fd, started)
                finally:
                    os.close(fd)
                continue
            if not self._still_at_path(fd):
                os.close(fd)  # a releaser removed the file after we opened it: lock the new one
                continue
            self._fd, self._pid = fd, os.getpid()
            self._write_owner()
            atexit.register(self.release)
            return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None or self._pid != os.getpid():
            return  # not held, or a forked child's copy: only the owner removes the file
        try:
            if self._still_at_path(fd):
                os.unlink(self.path)  # while still holding it, so nobody locks a file about to vanish
        except OSError:
            pass
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    # -- internals --------------------------------------------------------------------------------

    def _still_at_path(self, fd):
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (at_path.st_dev, at_path.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_owner(self):
        owner = {"pid": os.getpid(), "heartbeat": self.heartbeat, "what": self.what,
                 "started": round(time.time(), 3)}
        data = (json.dumps(owner, sort_keys=True) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def _holder(self, fd):
        """The holder's record, or None while it cannot be trusted (being written, or stale)."""
        try:
            raw = os.pread(fd, 4096, 0)
            holder = json.loads(raw.decode("utf-8", "replace"))
        except (OSError, ValueError):
            return None
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
            return None
        kernel_pid = _flock_holder(fd)
        if kernel_pid is not None and kernel_pid != holder["pid"]:
            return None  # the record is an earlier owner's: the new one has not written its own yet
        if holder["pid"] <= 1 or holder["pid"] == os.getpid():
            return None
        return holder

    def _silent_for(self, holder):
        """Seconds the holder's heartbeat has not changed, judged on this host's monotonic clock (a heartbeat
        already old when first seen counts from its mtime)."""
        now = self._clock()
        signature = _signature(holder["heartbeat"])
        key = (holder["pid"], signature)
        if self._seen is None or self._seen[0] != holder["pid"]:
            age = max(0.0, time.time() - signature[1] / 1e9) if signature else 0.0
            self._changed_at = now - age
        elif self._seen != key:
            self._changed_at = now
        self._seen = key
        return now - self._changed_at

    def _contend(self, fd, started):
        holder = self._holder(fd)
        if holder is None:
            time.sleep(self.poll)
            return
        heartbeat = holder.get("heartbeat")
        reason = None
        if self.may_stop is not None and not self.may_stop(holder):
            pass
        elif heartbeat and self.heartbeat and os.path.abspath(heartbeat) == self.heartbeat:
            reason = "left running by an earlier, killed run of this job"
        elif heartbeat:
            silent = self._silent_for(holder)
            if silent >= self.silence:
                reason = "its controller has been silent for %d s" % silent
        if reason is None:
            if self.on_wait is not None:
                self.on_wait(holder, self._clock() - started)
            time.sleep(self.poll)
            return
        self._stop(fd, holder, reason)

    def _stop(self, fd, holder, reason):
        pid = holder["pid"]
        self.taken_over = {"pid": pid, "what": holder.get("what"), "reason": reason, "signal": "SIGTERM"}
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self._wait_free(fd, self.grace):
            return
        self.taken_over["signal"] = "SIGKILL"
        for victim in [pid] + _children(pid):
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass
        if not self._wait_free(fd, self.grace):
            raise LockBusy("%s is held by process %d (%s), which did not stop on SIGTERM and SIGKILL"
                           % (self.path, pid, holder.get("what") or "unknown work"))

    def _wait_free(self, fd, seconds):
        deadline = self._clock() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)  # acquire() locks the file found at the path afresh
                return True
            if self._clock() >= deadline:
                return False
            time.sleep(0.05)


def describe(holder):
    """One line about a holder, for progress stages and messages."""
    what = holder.get("what") or "work on this object"
    return "%s by process %d" % (what, holder["pid"])


class WaitReport:
    """on_wait callback that reports the wait as a progress stage (opened only if a wait happens)."""

    def __init__(self, progress_file, writer_factory):
        self._path = progress_file
        self._factory = writer_factory
        self._writer = None

    def __call__(self, holder, waited):
        if not self._path:
            return
        if self._writer is None:
            self._writer = self._factory(self._path)
        self._writer.update("waiting for %s (%d s)" % (describe(holder), waited), 0, 0)

    def writer(self):
        """The progress writer, opened now (for a caller that reports its own stages); None without a file."""
        if self._writer is None and self._path:
            self._writer = self._factory(self._path)
        return self._writer

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def hold(path, progress_file=None, what=None, writer_factory=None, **options):
    """Acquire the lock at ``path`` for a module whose controller beats on ``<progress_file>.alive``;
    a wait is reported in ``progress_file`` through ``writer_factory`` (a ProgressWriter class). Returns the
    held TargetLock; raises LockBusy."""
    report = WaitReport(progress_file if writer_factory else None, writer_factory)
    also = options.pop("on_wait", None)

    def on_wait(holder, waited):
        report(holder, waited)
        if also is not None:
            also(holder, waited)

    lock = TargetLock(path, heartbeat=heartbeat_path(progress_file) if progress_file else None, what=what,
                      on_wait=on_wait, **options)
    try:
        return lock.acquire()
    finally:
        report.close()


def takeover_note(lock):
    """A sentence about a holder this lock stopped, or None."""
    taken = lock.taken_over
    if not taken:
        return None
    return ("stopped process %d (%s) with %s to take over %s: %s"
            % (taken["pid"], taken.get("what") or "unknown work", taken["signal"], lock.path, taken["reason"]))


def own(module, path, what, writer_factory=None, **options):
    """Hold the lock at ``path`` for an Ansible module (duck-typed: params, warn, fail_json) until it exits;
    a stopped holder is reported as a warning, a holder that cannot be stopped fails the module."""
    try:
        lock = hold(path, module.params.get("progress_file"), what, writer_factory, **options)
    except (LockBusy, OSError) as exc:
        module.fail_json(msg="could not take the lock %s for %s: %s; stop the other run's module, then run again"
                             % (path, what, exc))
    note = takeover_note(lock)
    if note:
        module.warn(note)
    return lock
