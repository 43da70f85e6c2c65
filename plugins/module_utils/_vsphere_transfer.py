# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP downloads of NFC lease files and datastore files, resumable with Range.

A download goes to ``DEST.part``; a later run continues where it stopped (the server must answer
206 with the matching Content-Range, else it starts over) and the sha1 of the whole file is
computed on the way (the kept prefix is hashed first), so a lease manifest can be checked without
reading the file twice. Only a complete file is renamed to DEST.
"""

from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import VsphereError

try:
    import requests

    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc

CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Cancelled(Exception):
    pass


class TransferBroken(VsphereError):
    """The connection broke or stalled mid-transfer; the .part file is kept for a Range resume."""


def new_session(conn):
    session = requests.Session()
    session.verify = conn.verify
    if not conn.verify:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the user chose validate_certs: false
    session.headers["Cookie"] = conn.cookie
    return session


def _check_status(resp, url_for_humans):
    if resp.status_code in (401, 403):
        raise VsphereError("the server refused the download of %s (HTTP %d)" % (url_for_humans, resp.status_code),
                           "the account needs the Datastore.Browse / VirtualMachine.Provisioning privileges")
    if resp.status_code == 404:
        raise VsphereError("%s does not exist on the server (HTTP 404)" % url_for_humans,
                           "the lease or file went away; run again to start a new export")
    if resp.status_code >= 400:
        raise VsphereError("download of %s failed with HTTP %d" % (url_for_humans, resp.status_code),
                           "retry; a run resumes where this one stopped")


def download(session, url, dest, *, label, expected_size=None, on_bytes=None, timeout=60, cancel=None):
    """Download ``url`` to ``dest`` resuming ``dest.part``; returns (sha1 hex, size, bytes fetched now)."""
    part = dest + ".part"
    sha1 = hashlib.sha1()  # noqa: S324 - the NFC lease manifest is sha1; this checks it, not a security hash
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if expected_size is not None and have > expected_size:
        have = 0
    if have:
        with open(part, "rb") as handle:
            while True:
                block = handle.read(CHUNK)
                if not block:
                    break
                sha1.update(block)
        if on_bytes:
            on_bytes(have, resumed=True)
    headers = {"Range": "bytes=%d-" % have} if have else {}
    fetched = 0
    try:
        if expected_size is not None and have == expected_size:
            resp = None
        else:
            # verify passed per request: a session-level False loses against REQUESTS_CA_BUNDLE in the environment
            resp = session.get(url, headers=headers, stream=True, timeout=timeout, verify=session.verify)
            if have and resp.status_code == 200:  # the server ignored Range: start over
                have = 0
                sha1 = hashlib.sha1()  # noqa: S324
            elif have and resp.status_code == 206:
                match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != have:
                    raise VsphereError("the server resumed %s at the wrong offset (%s)" % (
                        label, resp.headers.get("Content-Range")), "remove %s and run again" % part)
            elif resp.status_code == 416 and have:
                resp = None  # nothing left to fetch
            else:
                _check_status(resp, label)
        if resp is not None:
            with open(part, "r+b" if have else "wb") as handle:
                handle.seek(have)
                handle.truncate()
                for block in resp.iter_content(CHUNK):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled")
                    handle.write(block)
                    sha1.update(block)
                    fetched += len(block)
                    if on_bytes:
                        on_bytes(len(block))
                handle.flush()
                os.fsync(handle.fileno())
    except requests.exceptions.Timeout:
        raise TransferBroken("the download of %s stalled for more than %s s" % (label, timeout),
                             "run again: it resumes from the %d bytes already received" % (have + fetched)) from None
    except requests.exceptions.SSLError:
        raise VsphereError("TLS verification failed for the download of %s" % label,
                           "trust the vCenter/ESXi CA certificate, or set validate_certs: false for a lab") from None
    except requests.exceptions.RequestException as exc:
        raise TransferBroken("the download of %s broke off (%s)" % (label, type(exc).__name__),
                             "run again: it resumes from the %d bytes already received" % (have + fetched)) from None
    size = os.path.getsize(part)
    if expected_size is not None and size != expected_size:
        raise VsphereError("%s has %d bytes, the server announced %d" % (label, size, expected_size),
                           "run again to resume; if it persists remove %s" % part)
    os.replace(part, dest)
    return sha1.hexdigest(), size, fetched


def read_ranges(session, url, ranges, handle, *, label, on_bytes=None, timeout=60):
    """Copy each (start, length) of ``url`` into the open file ``handle`` at the same offset; returns bytes copied."""
    copied = 0
    try:
        for start, length in ranges:
            resp = session.get(url, headers={"Range": "bytes=%d-%d" % (start, start + length - 1)},
                               stream=True, timeout=timeout, verify=session.verify)
            if resp.status_code != 206:
                _check_status(resp, label)
                raise VsphereError("the server ignored the byte range of %s (HTTP %d)" % (label, resp.status_code),
                                   "this server cannot serve changed areas; use a full copy")
            handle.seek(start)
            for block in resp.iter_content(CHUNK):
                handle.write(block)
                copied += len(block)
                if on_bytes:
                    on_bytes(len(block))
    except requests.exceptions.Timeout:
        raise VsphereError("reading changed areas of %s stalled for more than %s s" % (label, timeout),
                           "run again: the sync restarts from the last recorded changeId") from None
    except requests.exceptions.RequestException as exc:
        raise VsphereError("reading changed areas of %s broke off (%s)" % (label, type(exc).__name__),
                           "run again: the sync restarts from the last recorded changeId") from None
    return copied
