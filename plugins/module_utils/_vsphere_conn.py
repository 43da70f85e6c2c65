# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connecting to vCenter/ESXi with pyVmomi, with errors that say what went wrong and what to do.

No message built here ever contains the password: every error text goes through ``scrub``
with the secrets of the connection, because pyVmomi and the socket layer may echo URLs.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError

try:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim, vmodl

    HAS_PYVMOMI = True
    PYVMOMI_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module through missing_required_lib
    HAS_PYVMOMI = False
    PYVMOMI_IMPORT_ERROR = exc
    vim = vmodl = None

DEFAULT_PORT = 443


class VsphereError(SourceError):
    """A vSphere call that failed; problem and fix are free of secrets."""


def scrub(text, secrets) -> str:
    """``text`` with every non-empty secret replaced by '********'."""
    text = str(text)
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), "********")
    return text


class Connection:
    """An open session: ``si`` (ServiceInstance), ``content``, ``host`` (as connected), ``cookie``
    (for the datastore and NFC HTTP downloads), ``verify`` (TLS verification for those)."""

    def __init__(self, si, host, port, verify, timeout, secrets):
        self.si = si
        self.content = si.RetrieveContent()
        self.host = host
        self.port = port
        self.verify = verify
        self.timeout = timeout
        self.secrets = secrets

    @property
    def cookie(self) -> str:
        return self.si._stub.cookie

    @property
    def base_url(self) -> str:
        return "https://%s:%d" % (self.host, self.port) if self.port != DEFAULT_PORT else "https://%s" % self.host

    def close(self):
        try:
            Disconnect(self.si)
        except Exception:  # noqa: S110 - the session ends anyway when the server drops it
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(hostname, username, password, port=DEFAULT_PORT, validate_certs=True, timeout=60) -> Connection:
    """Log in or raise VsphereError naming the cause: bad credentials, unreachable host, TLS, timeout."""
    if not HAS_PYVMOMI:
        raise VsphereError("the Python library pyVmomi is not installed", "pip install pyvmomi")
    if not hostname:
        raise VsphereError("no vCenter/ESXi host name was given", "set hostname (or the VMWARE_HOST variable)")
    if not username:
        raise VsphereError("no user name was given for %s" % hostname,
                           "set username (or the VMWARE_USER variable)")
    secrets = (password,)
    where = "%s:%d" % (hostname, port)
    try:
        # An explicit context: pyVmomi silently skips verification for localhost otherwise.
        context = ssl.create_default_context() if validate_certs else ssl._create_unverified_context()  # noqa: S323
        si = SmartConnect(host=hostname, port=port, user=username, pwd=password or "", sslContext=context,
                          httpConnectionTimeout=timeout)
    except vim.fault.InvalidLogin:
        raise VsphereError("%s refused the login of user %r: wrong user name or password" % (where, username),
                           "check username and password (keep the password in Ansible Vault or the "
                           "VMWARE_PASSWORD environment variable)") from None
    except ssl.SSLCertVerificationError as exc:
        reason = scrub(exc.verify_message, secrets)
        raise VsphereError("the TLS certificate of %s cannot be verified (%s)" % (where, reason),
                           "install the vCenter CA certificate in the system trust store, or set "
                           "validate_certs: false for a lab") from None
    except ssl.SSLError as exc:
        raise VsphereError("TLS handshake with %s failed (%s)" % (where, scrub(exc.reason or exc, secrets)),
                           "check that the port serves the vSphere API over HTTPS") from None
    except (socket.timeout, TimeoutError):
        raise VsphereError("%s did not answer within %s s" % (where, timeout),
                           "check the host is up and not overloaded, or raise the timeout option") from None
    except socket.gaierror:
        raise VsphereError("the host name %r does not resolve" % hostname,
                           "check hostname and DNS") from None
    except OSError as exc:
        raise VsphereError("cannot reach %s (%s)" % (where, scrub(exc.strerror or exc, secrets)),
                           "check hostname, port and that a firewall lets HTTPS through") from None
    except vmodl.MethodFault as exc:
        raise VsphereError("%s refused the login: %s" % (where, scrub(exc.msg, secrets)),
                           "check the account is enabled and has the permissions needed") from None
    except Exception as exc:  # pyVmomi raises bare Exception for a non-vSphere endpoint
        raise VsphereError("%s does not speak the vSphere API (%s)" % (where, scrub(exc, secrets)[:200]),
                           "point hostname/port at a vCenter or ESXi host") from None
    return Connection(si, hostname, port, validate_certs, timeout, secrets)


def fault_text(exc, conn=None) -> str:
    """One line for a vSphere fault or a transport error, without secrets."""
    secrets = conn.secrets if conn is not None else ()
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "vCenter did not answer in time (%s s)" % (conn.timeout if conn else "?")
    msg = getattr(exc, "msg", None) or str(exc)
    name = type(exc).__name__
    return scrub("%s: %s" % (name, msg) if msg and name not in msg else msg or name, secrets)


# Waits between the attempts of a read-only call whose connection broke (seconds, then give up).
READ_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)


def _broken(conn, what, exc, attempts):
    tried = " (%d attempts)" % attempts if attempts > 1 else ""
    return VsphereError("the connection to vCenter %s broke while trying to %s%s: %s" % (
        conn.host, what, tried, scrub(type(exc).__name__, conn.secrets)),
        "check the network between this host and vCenter (proxy, firewall or load-balancer time-outs) and run "
        "again: a download resumes from the bytes already received")


def call(conn, what, func, *args, **kwargs):
    """Run one API call; a fault, a time-out or a broken connection becomes a VsphereError naming ``what``."""
    return _call(conn, what, func, args, kwargs, ())


def read_call(conn, what, func, *args, **kwargs):
    """``call`` for a call that only reads: when the connection breaks (a reset, a TLS EOF, a server that
    hung up), it is tried again on a new connection after READ_RETRY_DELAYS, then reported like ``call``."""
    return _call(conn, what, func, args, kwargs, READ_RETRY_DELAYS)


def _call(conn, what, func, args, kwargs, delays):
    attempt = 0
    while True:
        attempt += 1
        try:
            return func(*args, **kwargs)
        except (socket.timeout, TimeoutError):
            raise VsphereError("vCenter %s did not answer %s within %s s" % (conn.host, what, conn.timeout),
                               "raise the timeout option or retry when vCenter is less busy") from None
        except vmodl.MethodFault as exc:
            raise VsphereError("vCenter refused to %s: %s" % (what, fault_text(exc, conn)),
                               "see the vCenter task list and the permissions of the account") from None
        except (OSError, http.client.HTTPException) as exc:
            # pyVmomi drops its pooled connections on these, so the next attempt opens a new one.
            if attempt > len(delays):
                raise _broken(conn, what, exc, attempt) from None
            time.sleep(delays[attempt - 1])


def _task_props(conn, task):
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=task)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error"])])
    found = conn.content.propertyCollector.RetrieveContents([spec]) or []
    return {prop.name: prop.val for prop in found[0].propSet} if found else {}


def wait_task(conn, task, what, timeout=600):
    """Wait for a vSphere task. Reads only state and error, because some tasks (snapshot removal)
    carry an ``info.entity`` that pyVmomi cannot decode."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        props = read_call(conn, "report the state of the task to " + what, _task_props, conn, task)
        state = props.get("info.state")
        if state == "success":
            return task
        if state == "error":
            raise VsphereError("vCenter could not %s: %s" % (what, fault_text(props.get("info.error"), conn)),
                               "see the task in vCenter for details, fix the cause and run again")
        if time.monotonic() > deadline:
            raise VsphereError("the vCenter task to %s did not finish within %d s" % (what, timeout),
                               "check the task in vCenter; raise the time-out if the host is slow")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
