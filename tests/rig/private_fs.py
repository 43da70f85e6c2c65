"""A small file system that only the processes of one test see: a size-limited tmpfs mounted inside a
private mount namespace (``unshare --mount``), never in the host's mount table.

``PrivateFs(mountpoint, size_mib)`` starts a holder process that mounts the tmpfs in its own namespace
and then waits on its stdin; ``command(argv)`` wraps a command with ``nsenter`` so it runs in that
namespace (and sees the tmpfs at ``mountpoint``); ``host_view(path)`` is the same path as this process
can reach it, through ``/proc/<holder>/root``, for reading, filling and removing files without a
subprocess. ``close()`` ends the holder (by its PID), and the namespace and the tmpfs go with it; they go
too when the test process dies, because the holder then reads end-of-file.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

_MOUNT = 'mount -t tmpfs -o size="$1"M v2kvm-test "$2" && echo mounted && exec cat >/dev/null'


class PrivateFs:
    def __init__(self, mountpoint, size_mib):
        self.mountpoint = os.path.abspath(str(mountpoint))
        os.makedirs(self.mountpoint, exist_ok=True)
        self.holder = subprocess.Popen(
            [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT, "sh",
             str(int(size_mib)), self.mountpoint],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "mounted":
            self.close()
            raise RuntimeError("could not mount a private tmpfs: %s" % self.holder.stderr.read())
        self.root = "/proc/%d/root" % self.holder.pid

    def host_view(self, *parts) -> str:
        """The path ``mountpoint/parts...`` inside the namespace, as this process reaches it."""
        return self.root + os.path.join(self.mountpoint, *parts)

    def command(self, argv) -> list:
        return [shutil.which("nsenter") or "nsenter", "--target", str(self.holder.pid), "--mount", "--", *argv]

    def free(self) -> int:
        stat = os.statvfs(self.host_view())
        return stat.f_bavail * stat.f_frsize

    def fill(self, name="filler") -> str:
        """Another writer takes all free space, as ``dd`` into a file would: 1 MiB at a time, then 4 KiB at a
        time, keeping what it got, until the file system refuses even 4 KiB. Returns the file (host view)."""
        path = self.host_view(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            size = 0
            for chunk in (1 << 20, 4096):
                while True:
                    try:
                        os.posix_fallocate(fd, size, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    size += chunk
        finally:
            os.close(fd)
        return path

    def listing(self):
        return sorted(os.listdir(self.host_view()))

    def close(self):
        if self.holder.poll() is None:
            self.holder.stdin.close()
            try:
                self.holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
        for stream in (self.holder.stdout, self.holder.stderr):
            stream.close()
        if self.holder.stdin and not self.holder.stdin.closed:
            self.holder.stdin.close()


def host_mounts() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return handle.read()
