# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open a libvirt connection and turn libvirt's failures into messages that name the fix."""

from __future__ import annotations

import traceback

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None
    # libvirt's default handler prints every error on stderr, which would corrupt module output
    # and duplicate the message we raise anyway.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

HAS_LIBVIRT = libvirt is not None


class LibvirtConnectionError(Exception):
    """The URI could not be opened; the message says why and what to do about it."""


def _advice(uri, message):
    lowered = message.lower()
    if "no connection driver available" in lowered or "unable to parse uri" in lowered:
        return ("the URI is not one libvirt understands: use a URI such as qemu:///system, "
                "qemu+ssh://user@host/system or qemu+tls://host/system")
    if "unexpected qemu uri path" in lowered:
        return "the qemu driver only has the paths /system and /session: use qemu:///system"
    if "permission denied" in lowered or "authentication" in lowered or "not authorized" in lowered:
        return ("the user running the module may not use this daemon: run the task with become: true, "
                "or add the user to the libvirt group (polkit) and log in again")
    if "failed to connect socket" in lowered and "no such file" in lowered:
        return ("no libvirt daemon listens there: start it (systemctl start libvirtd, or "
                "virtqemud.socket on modular-daemon hosts) or fix the socket path in the URI")
    if "connection refused" in lowered:
        return ("nothing accepts connections at that address: start the daemon with the matching "
                "listener (libvirtd-tcp.socket / libvirtd-tls.socket) or use qemu+ssh://")
    if ("resolve hostname" in lowered or "no route to host" in lowered or "timed out" in lowered
            or "ssh:" in lowered or "cannot recv data" in lowered):
        return ("the remote host cannot be reached: check the host name, that SSH works "
                "non-interactively for this user (key in the agent, host key known), and the network")
    return "check that the URI is right and that the libvirt daemon it names is running"


def open_connection(uri, read_only=False):
    """Return an open virConnect for ``uri`` or raise LibvirtConnectionError.

    The caller must have checked HAS_LIBVIRT (modules fail with missing_required_lib first).
    """
    if libvirt is None:
        raise LibvirtConnectionError(
            "the libvirt Python bindings are missing: install libvirt-python (pip) or "
            "python3-libvirt (apt/dnf) for the interpreter that runs the module")
    try:
        conn = libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)
    except libvirt.libvirtError as exc:
        message = str(exc)
        raise LibvirtConnectionError(
            "cannot open libvirt URI %s: %s; %s" % (uri, message, _advice(uri, message))) from exc
    if conn is None:
        raise LibvirtConnectionError("cannot open libvirt URI %s: libvirt returned no connection" % uri)
    return conn


def is_local_uri(uri):
    """True when the URI names a daemon on this machine (so /dev/kvm here is the guest's /dev/kvm)."""
    scheme, _sep, rest = uri.partition("://")
    host = rest.split("/", 1)[0]
    return "+" not in scheme or scheme.endswith("+unix") or host in ("", "localhost", "127.0.0.1")


def error_code(exc):
    """libvirt error code of a libvirtError, or None for anything else."""
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        return exc.get_error_code()
    return None


def connect_for_module(module, uri):
    """The open connection an AnsibleModule needs, or the module failed with a message naming the
    fix (missing libvirt-python, unreachable daemon, bad URI, permission)."""
    from ansible.module_utils.basic import missing_required_lib

    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    try:
        return open_connection(uri)
    except LibvirtConnectionError as exc:
        module.fail_json(msg=str(exc))
    return None  # not reached: fail_json exits
