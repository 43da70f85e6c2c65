"""A private sshd on 127.0.0.1 for tests where Ansible must reach a "host" over real SSH.

``start_sshd(home, prefix=[...])`` runs sshd under a command prefix, e.g. ``nsenter --mount=...`` to
put it inside a KVM test host's mount namespace: a task delegated there over SSH then sees that
host's /var/lib/libvirt, exactly as on a separate machine. Stopped by PID with ``stop_sshd``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time


class SshdError(RuntimeError):
    """sshd is missing or did not start; the message says what to install or where its log is."""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sshd(home, *, prefix=(), timeout=10.0):
    """Start sshd with its own keys under ``home``; return a dict for ``ansible_vars`` and ``stop_sshd``."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd_bin):
        raise SshdError("sshd is not installed: apt-get install openssh-server")
    os.makedirs(home, exist_ok=True)
    for name in ("host_key", "client_key"):
        if not os.path.exists(os.path.join(home, name)):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(home, name)],
                           check=True)
    authorized = os.path.join(home, "authorized_keys")
    with open(os.path.join(home, "client_key.pub")) as src, open(authorized, "w") as dst:
        dst.write(src.read())
    os.chmod(authorized, 0o600)
    port = free_port()
    config = os.path.join(home, "sshd_config")
    with open(config, "w") as handle:
        handle.write("\n".join([
            "Port %d" % port, "ListenAddress 127.0.0.1", "HostKey %s" % os.path.join(home, "host_key"),
            "AuthorizedKeysFile %s" % authorized, "PidFile %s" % os.path.join(home, "sshd.pid"),
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    # sshd insists on its privilege-separation directory (the distro service creates it at boot).
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log_path = os.path.join(home, "sshd.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*prefix, sshd_bin, "-D", "-e", "-f", config], stdout=subprocess.DEVNULL,
                                stderr=log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    else:
        proc.kill()
        proc.wait(5)
        raise SshdError("sshd did not start within %d s; see %s" % (timeout, log_path))
    if proc.poll() is not None:
        with open(log_path) as log:
            raise SshdError("sshd exited at start: %s" % log.read())
    return {"port": port, "key": os.path.join(home, "client_key"), "known_hosts": os.path.join(home, "known_hosts"),
            "proc": proc}


def stop_sshd(sshd):
    proc = sshd["proc"]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def ansible_vars(sshd, python=sys.executable):
    """Inventory variables that reach this sshd as the current user."""
    return {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": sshd["port"],
        "ansible_user": os.environ.get("USER", "root"), "ansible_ssh_private_key_file": sshd["key"],
        "ansible_python_interpreter": python,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=%s" % sshd["known_hosts"],
    }
