# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin wrapper around the qemu-img command line.

Every call passes an argument list (never a shell) and turns a failure into a
QemuImgError that names the image and repeats what qemu-img printed on stderr.
Sources may be plain file names or the ``json:{...}`` strings built by
image_source() for disks that lie inside an OVA.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import subprocess
import threading

QEMU_IMG = "qemu-img"

# `qemu-img check` exit codes (see qemu-img(1)).
_CHECK_CORRUPTIONS = 2
_CHECK_LEAKS = 3
_CHECK_UNSUPPORTED = 63

_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


class QemuImgError(Exception):
    """A qemu-img call failed; the message names the image and qemu-img's complaint."""

    def __init__(self, message, file=None, stderr="", returncode=None, cmd=None):
        super().__init__(message)
        self.file = file
        self.stderr = stderr
        self.returncode = returncode
        self.cmd = cmd

    @property
    def no_space(self) -> bool:
        """Whether qemu-img failed because a file system (or a quota) was full: its strerror in stderr."""
        text = self.stderr or ""
        return any(words in text for words in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)))


def describe_source(source: str) -> str:
    """A short human name for a plain path or an image_source() json: string."""
    if not source.startswith("json:"):
        return source
    try:
        node = json.loads(source[len("json:"):])
    except ValueError:
        return source
    parts = []
    while isinstance(node, dict):
        if "offset" in node or "size" in node:
            parts.append("bytes %s+%s" % (node.get("offset", 0), node.get("size", "end")))
        if "filename" in node:
            return "%s (%s)" % (node["filename"], ", ".join(parts)) if parts else node["filename"]
        node = node.get("file")
    return source


def _run(args, file, what):
    cmd = [QEMU_IMG] + list(args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except FileNotFoundError as exc:
        raise QemuImgError(
            "qemu-img is not installed or not on PATH (needed to %s %s); install the qemu-utils "
            "package" % (what, describe_source(file)), file=file, cmd=cmd) from exc
    return proc


def _fail(proc, file, what, cmd=None):
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    message = "qemu-img could not %s %s (exit %d): %s" % (
        what, describe_source(file), proc.returncode, stderr or "no message")
    raise QemuImgError(
        message, file=file, stderr=stderr, returncode=proc.returncode, cmd=cmd or proc.args)


def _format_args(fmt, flag="-f"):
    return [flag, fmt] if fmt else []


@functools.lru_cache(maxsize=1)
def qemu_img_version() -> str:
    """Version number of the qemu-img on PATH, e.g. ``7.2.22``."""
    proc = _run(["--version"], QEMU_IMG, "report the version of")
    if proc.returncode != 0:
        _fail(proc, QEMU_IMG, "report the version of")
    first = proc.stdout.decode("utf-8", "replace").splitlines()[0] if proc.stdout else ""
    match = re.search(r"version\s+(\S+)", first)
    return match.group(1) if match else first.strip()


def image_source(disk: dict, container: str | None = None) -> str:
    """What to hand qemu-img to read one VM-spec disk in place.

    A plain file (offset 0, no tar member) is returned as its path. A disk inside an OVA
    becomes a ``json:`` source: the disk's format driver over a ``raw`` driver that
    exposes only ``size`` bytes at ``offset`` of the OVA, so nothing is extracted. The
    spec leaves ``path`` null inside an OVA, so the OVA path (the spec's ``source.path``)
    comes from ``container`` then.
    """
    name = disk.get("file") or disk.get("id") or "disk"
    if disk.get("compression"):
        raise QemuImgError(
            "disk %s is %s-compressed in the OVF (ovf:compression); qemu-img cannot read it in "
            "place. Unpack the OVA and decompress the disk file (e.g. with gunzip), then convert "
            "it with src= instead of disk=" % (name, disk["compression"]), file=name)
    path = disk.get("path") or container
    if not path:
        raise QemuImgError(
            "disk %s has no path (it lies inside an OVA); pass the OVA path as container "
            "(the spec's source.path)" % name, file=name)
    fmt = disk.get("format") or "vmdk"
    offset = int(disk.get("offset") or 0)
    if offset == 0 and not disk.get("member"):
        return path
    window = {"driver": "raw", "offset": offset, "file": {"driver": "file", "filename": path}}
    if disk.get("size") is not None:
        window["size"] = int(disk["size"])
    if fmt == "raw":
        return "json:" + json.dumps(window, sort_keys=True)
    return "json:" + json.dumps({"driver": fmt, "file": window}, sort_keys=True)


def info(source: str, fmt: str | None = None, *, force_share: bool = False) -> dict:
    """``qemu-img info --output=json`` as a dict."""
    args = ["info", "--output=json"] + _format_args(fmt) + (["-U"] if force_share else []) + [source]
    proc = _run(args, source, "read image information of")
    if proc.returncode != 0:
        _fail(proc, source, "read image information of")
    return json.loads(proc.stdout)


def map_extents(source: str, fmt: str, *, force_share: bool = False) -> list[dict]:
    """``qemu-img map --output=json``: extents with start, length, data, zero and (often) offset."""
    args = ["map", "--output=json"] + _format_args(fmt) + (["-U"] if force_share else []) + [source]
    proc = _run(args, source, "map the allocation of")
    if proc.returncode != 0:
        _fail(proc, source, "map the allocation of")
    return json.loads(proc.stdout)


def measure(source: str, fmt: str, out_fmt: str) -> dict:
    """``qemu-img measure --output=json``: bytes a conversion to ``out_fmt`` needs.

    ``required`` counts the source's allocated data plus the output format's metadata;
    ``fully-allocated`` is the size if every cluster were written.
    """
    args = ["measure", "--output=json"] + _format_args(fmt) + ["-O", out_fmt, source]
    proc = _run(args, source, "measure the converted size of")
    if proc.returncode != 0:
        _fail(proc, source, "measure the converted size of")
    return json.loads(proc.stdout)


def check(path: str, fmt: str) -> dict:
    """``qemu-img check``: {"ok", "corruptions", "leaks", "supported", "raw"}.

    Formats without consistency metadata (raw) report ok with supported=False.
    """
    args = ["check", "--output=json"] + _format_args(fmt) + [path]
    proc = _run(args, path, "check")
    if proc.returncode == _CHECK_UNSUPPORTED:
        return {"ok": True, "corruptions": 0, "leaks": 0, "supported": False, "raw": {}}
    if proc.returncode not in (0, _CHECK_CORRUPTIONS, _CHECK_LEAKS):
        _fail(proc, path, "check")
    try:
        raw = json.loads(proc.stdout)
    except ValueError:
        _fail(proc, path, "check")
    corruptions = int(raw.get("corruptions", 0)) + int(raw.get("check-errors", 0))
    leaks = int(raw.get("leaks", 0))
    return {"ok": corruptions == 0 and proc.returncode == 0, "corruptions": corruptions,
            "leaks": leaks, "supported": True, "raw": raw}


def compare(src: str, src_fmt: str, dst: str, dst_fmt: str, *, on_progress=None) -> tuple[bool, str]:
    """``qemu-img compare``: (same guest-visible content?, qemu-img's verdict line); calls
    on_progress(fraction) as qemu-img reports it."""
    args = ["compare", "-p"] + _format_args(src_fmt) + _format_args(dst_fmt, "-F") + [src, dst]
    proc = _run_with_progress(args, src, "compare", on_progress)
    message = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        return True, message
    if proc.returncode == 1:
        return False, message
    _fail(proc, "%s and %s" % (describe_source(src), describe_source(dst)), "compare")
    return False, message  # not reached


def convert(src: str, src_fmt: str, dst: str, dst_fmt: str, *, on_progress=None,
            extra_options: list[str] | None = None) -> None:
    """``qemu-img convert`` keeping holes; calls on_progress(fraction) as qemu-img reports it.

    If the caller is interrupted (an exception raised in this thread, e.g. from a signal
    handler) the qemu-img child is killed before the exception propagates. The output file
    is left for the caller to remove.
    """
    args = ["convert", "-p"] + _format_args(src_fmt) + ["-O", dst_fmt] + list(extra_options or []) + [src, dst]
    proc = _run_with_progress(args, src, "convert", on_progress)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise QemuImgError(
            "qemu-img could not convert %s to %s %s (exit %d): %s"
            % (describe_source(src), dst_fmt, dst, proc.returncode, stderr or "no message"),
            file=src, stderr=stderr, returncode=proc.returncode, cmd=proc.args)


def _run_with_progress(args, file, what, on_progress):
    """Run qemu-img with ``-p`` among ``args``: its progress reports go to on_progress(fraction), the rest
    of stdout is kept. Returns a CompletedProcess. An exception raised in this thread while it waits (from
    a signal handler) kills qemu-img before it propagates."""
    cmd = [QEMU_IMG] + args
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise QemuImgError("qemu-img is not installed or not on PATH (needed to %s %s); "
                           "install the qemu-utils package" % (what, describe_source(file)),
                           file=file, cmd=cmd) from exc
    stderr_chunks = []
    # A separate reader keeps qemu-img from blocking on a full stderr pipe.
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    drain.start()
    output = []
    try:
        pending = b""
        while True:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            pending += chunk
            # qemu-img ends each progress report with \r; keep any partial report for later.
            *complete, pending = re.split(rb"[\r\n]", pending)
            for report in complete:
                match = _PROGRESS.search(report)
                if match is None:
                    output.append(report)
                elif on_progress is not None:
                    on_progress(min(1.0, float(match.group(1)) / 100.0))
        output.append(pending)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    text = b"\n".join(line for line in output if line.strip())
    return subprocess.CompletedProcess(cmd, proc.returncode, text, b"".join(stderr_chunks))
