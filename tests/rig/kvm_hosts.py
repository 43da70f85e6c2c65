"""Extra libvirt "hosts" on this one machine, for placement and KVM-to-KVM migration tests.

Each host is its own libvirtd started inside ``unshare --mount`` with private copies of
/run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and /etc/libvirt
bind-mounted over the real ones, its own ``host_uuid`` and a TCP listener on 127.0.0.1.
Two such daemons see different guests, pools and disk files at the same paths, exactly as two
machines would, and libvirt migrates between them for real (the host UUIDs differ, so libvirt
does not refuse "migrating to the same host"). The system daemon on qemu:///system is never
touched: hosts are reached only through ``qemu+tcp://127.0.0.1:PORT/system``.

Guests run under TCG; the qemu.conf written here turns off cgroups (two daemons would fight
over the same machine cgroup names) and writes character-device output to files directly (a
host has no virtlogd of its own).

    hosts = start_hosts(base_dir, ["h1", "h2"])      # -> [KvmHost, ...]
    hosts[0].uri, hosts[0].path("/var/lib/libvirt/images/x.raw")
    stop_hosts(hosts)                               # only the PIDs started here

``python -m rig.kvm_hosts start BASE NAME...`` / ``stop BASE`` do the same from a shell.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

if __package__ in (None, ""):
    # Run as a script: make tests/ importable so ``rig`` resolves.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rig.libvirtd import alive as _alive, answers as _answers  # noqa: E402

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
FIRST_PORT = 16610
# The directories a libvirtd keeps its state in; each host gets its own copy of all of them.
PRIVATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt", "/etc/libvirt")
POOL_NAME = "v2kvm"
POOL_PATH = "/var/lib/libvirt/images/v2kvm"

LIBVIRTD_CONF = """\
listen_tcp = 1
listen_tls = 0
listen_addr = "127.0.0.1"
tcp_port = "{port}"
auth_tcp = "none"
host_uuid = "{host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
max_clients = 100
"""

# qemu runs as root on these hosts: post-copy needs userfaultfd, which an unprivileged qemu may not
# open while the kernel's vm.unprivileged_userfaultfd is 0 (its default), and the tests must not
# change kernel settings of the machine they run on.
QEMU_CONF = """\
user = "root"
group = "root"
cgroup_controllers = [ ]
stdio_handler = "file"
migration_port_min = {mig_min}
migration_port_max = {mig_max}
remote_display_port_min = {vnc_min}
remote_display_port_max = {vnc_max}
"""


class KvmHostError(RuntimeError):
    """A host could not be started; the message names what to install or check."""


class KvmHost:
    """One libvirtd "host": ``uri`` to reach it, ``root`` where its private directories live."""

    def __init__(self, name, root, port, host_uuid, pid=None):
        self.name = name
        self.root = root
        self.port = port
        self.host_uuid = host_uuid
        self.pid = pid

    @property
    def uri(self):
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    def path(self, inside):
        """Where a path the host's guests see (e.g. under /var/lib/libvirt) is, seen from outside."""
        inside = os.path.normpath(inside)
        for private in PRIVATE_DIRS:
            if inside == private or inside.startswith(private + "/"):
                return os.path.join(self.root, private.strip("/").replace("/", "_"), os.path.relpath(inside, private))
        return inside

    def as_dict(self):
        return {"name": self.name, "root": self.root, "port": self.port, "host_uuid": self.host_uuid,
                "pid": self.pid, "uri": self.uri}


def _binary(name):
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if path is None:
        raise KvmHostError(f"{name} is not installed: apt-get install -y libvirt-daemon-system util-linux")
    return path


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _prepare_root(root, port, host_uuid, index):
    for private in PRIVATE_DIRS:
        os.makedirs(os.path.join(root, private.strip("/").replace("/", "_")), exist_ok=True)
    etc = os.path.join(root, "etc_libvirt")
    for sub in ("qemu", "storage", "storage/autostart", "nwfilter", "secrets"):
        os.makedirs(os.path.join(etc, sub), exist_ok=True)
    with open(os.path.join(etc, "libvirtd.conf"), "w", encoding="ascii") as handle:
        handle.write(LIBVIRTD_CONF.format(port=port, host_uuid=host_uuid))
    mig_min = 49300 + 20 * index
    with open(os.path.join(etc, "qemu.conf"), "w", encoding="ascii") as handle:
        # Each daemon hands out display ports on its own; separate ranges keep two hosts' guests (and the
        # system daemon's, from 5900) from being given the same VNC port.
        vnc_min = 6100 + 100 * index
        handle.write(QEMU_CONF.format(mig_min=mig_min, mig_max=mig_min + 19, vnc_min=vnc_min, vnc_max=vnc_min + 99))
    lib = os.path.join(root, "var_lib_libvirt")
    for sub in ("images", "qemu", "boot"):
        os.makedirs(os.path.join(lib, sub), exist_ok=True)
    os.makedirs(os.path.join(root, "var_log_libvirt", "qemu"), exist_ok=True)
    # qemu runs as libvirt-qemu and must traverse into the images and logs.
    for path in (root, lib, os.path.join(lib, "images"), os.path.join(root, "var_log_libvirt"),
                 os.path.join(root, "var_log_libvirt", "qemu")):
        os.chmod(path, 0o755)  # noqa: S103 - qemu (libvirt-qemu) must traverse these


def _launch_script(root, pidfile, libvirtd):
    # The mount points exist only once the system's libvirtd has run; on a fresh machine the hosts may
    # start first. /run/libvirt is libvirt's own directory either way.
    mounts = "; ".join(
        f"mkdir -p {p}; mount --bind {os.path.join(root, p.strip('/').replace('/', '_'))} {p}"
        for p in PRIVATE_DIRS)
    # The shell inside the private mount namespace binds the host's directories, then becomes libvirtd,
    # which daemonizes; the namespace lives as long as the daemon does.
    return f"set -e; mount --make-rprivate /; {mounts}; exec {libvirtd} --listen -d -p {pidfile}"


def start_host(base_dir, name, port, index=0):
    """Start one host under ``base_dir/name`` listening on 127.0.0.1:``port``; return a KvmHost."""
    if os.geteuid() != 0:
        raise KvmHostError("extra libvirt hosts need root (mount namespaces and libvirtd): run the tests as root")
    if not _port_free(port):
        raise KvmHostError(f"port {port} on 127.0.0.1 is taken: stop what listens there or pick another port")
    root = os.path.abspath(os.path.join(base_dir, name))
    host_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"v2kvm-test-host:{root}"))
    _prepare_root(root, port, host_uuid, index)
    pidfile = os.path.join(root, "libvirtd.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    proc = subprocess.run(
        [_binary("unshare"), "--mount", "--propagation", "private", "sh", "-c",
         _launch_script(root, pidfile, _binary("libvirtd"))],
        capture_output=True, text=True, check=False, timeout=START_TIMEOUT)
    if proc.returncode != 0:
        raise KvmHostError(f"starting libvirt host {name} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    host = KvmHost(name, root, port, host_uuid)
    deadline = time.monotonic() + START_TIMEOUT
    while host.pid is None:
        try:
            with open(pidfile, encoding="ascii") as handle:
                host.pid = int(handle.read().strip() or 0) or None
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise KvmHostError(f"libvirt host {name}: {pidfile} did not appear; "
                               f"see {root}/var_log_libvirt/libvirtd.log")
        time.sleep(0.05)
    try:
        while not _answers(host.uri):
            if time.monotonic() > deadline or not _alive(host.pid):
                raise KvmHostError(f"libvirt host {name} did not answer on {host.uri}; "
                                   f"see {root}/var_log_libvirt/libvirtd.log")
            time.sleep(0.1)
        _ensure_pool(host)
    except BaseException:
        stop_host(host)
        raise
    with open(os.path.join(root, "host.json"), "w", encoding="ascii") as handle:
        json.dump(host.as_dict(), handle)
    return host


def _ensure_pool(host):
    import libvirt

    os.makedirs(host.path(POOL_PATH), mode=0o755, exist_ok=True)
    conn = libvirt.open(host.uri)
    try:
        try:
            pool = conn.storagePoolLookupByName(POOL_NAME)
        except libvirt.libvirtError:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{POOL_NAME}</name><target><path>{POOL_PATH}</path></target></pool>")
        if not pool.isActive():
            pool.create()
        pool.setAutostart(True)
    finally:
        conn.close()


def stop_host(host):
    """Destroy the host's guests, then stop its libvirtd by the PID recorded at start."""
    if host.pid and _alive(host.pid):
        try:
            import libvirt

            conn = libvirt.open(host.uri)
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    dom.destroy()
                except libvirt.libvirtError:
                    pass
            conn.close()
        except Exception as exc:  # the daemon is going away anyway; its qemu children go with it
            print(f"kvm_hosts: could not destroy the guests of {host.name}: {exc}", file=sys.stderr)
        os.kill(host.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(host.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(host.pid):
            os.kill(host.pid, signal.SIGKILL)
    host.pid = None


def start_hosts(base_dir, names, first_port=FIRST_PORT):
    """Start one host per name on consecutive free ports; on failure stop those already started."""
    hosts = []
    port = first_port
    try:
        for index, name in enumerate(names):
            while not _port_free(port):
                port += 1
            hosts.append(start_host(base_dir, name, port, index))
            port += 1
    except BaseException:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts):
    for host in reversed(hosts):
        stop_host(host)


def load_hosts(base_dir):
    """The hosts a ``start`` from a shell left running (read back from their host.json)."""
    hosts = []
    for name in sorted(os.listdir(base_dir)):
        meta = os.path.join(base_dir, name, "host.json")
        if os.path.exists(meta):
            with open(meta, encoding="ascii") as handle:
                data = json.load(handle)
            hosts.append(KvmHost(data["name"], data["root"], data["port"], data["host_uuid"], data["pid"]))
    return hosts


def main(argv):
    if len(argv) >= 4 and argv[1] == "start":
        try:
            hosts = start_hosts(argv[2], argv[3:])
        except KvmHostError as exc:
            print(f"kvm_hosts: {exc}", file=sys.stderr)
            return 1
        for host in hosts:
            print(f"{host.name} {host.uri} pid {host.pid}")
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        stop_hosts(load_hosts(argv[2]))
        return 0
    print("usage: kvm_hosts.py start BASE NAME... | stop BASE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
