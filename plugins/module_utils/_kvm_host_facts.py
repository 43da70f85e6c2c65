# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one KVM host offers and what it already carries, read through libvirt only.

The facts are what placement filters and weighs: CPUs and memory (total, free, and what the
defined domains already claim), storage pools with their free space, the host CPU model and
features (CPU compatibility), and every domain with its allocation. Plain Python over a
virConnect, so it is unit-testable with libvirt's test driver. ``run`` is the kvm_host_info
module's entry.
"""

from __future__ import annotations

from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_detect import detect_domain_type
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import domain_disks, parse_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    connect_for_module,
    is_local_uri,
    libvirt,
)

MIB = 1024 * 1024
_STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
                6: "crashed", 7: "pmsuspended"}


def host_cpu(caps_root):
    """{"arch", "model", "vendor", "features"} of the host CPU from the capabilities XML."""
    cpu = caps_root.find("host/cpu")
    if cpu is None:
        return {"arch": None, "model": None, "vendor": None, "features": []}
    return {
        "arch": cpu.findtext("arch"),
        "model": cpu.findtext("model"),
        "vendor": cpu.findtext("vendor"),
        "features": sorted(f.get("name") for f in cpu.findall("feature") if f.get("name")),
    }


def offered_domain_types(caps_root, arch):
    """Domain types libvirt offers for the host architecture (e.g. ["kvm", "qemu"])."""
    types = set()
    for guest in caps_root.findall("guest"):
        arch_elem = guest.find("arch")
        if arch_elem is None or (arch and arch_elem.get("name") != arch):
            continue
        types.update(d.get("type") for d in arch_elem.findall("domain") if d.get("type"))
    return sorted(types)


def domain_facts(dom):
    """Name, state and allocation of one domain (defined or running)."""
    xml = dom.XMLDesc(0)
    root = parse_xml(xml)
    state = dom.state()[0]
    memory_kib = int(root.findtext("memory") or 0)
    vcpus = int(root.findtext("vcpu") or 1)
    cpu = root.find("cpu")
    return {
        "name": dom.name(),
        "uuid": dom.UUIDString(),
        "state": _STATE_NAMES.get(state, str(state)),
        "active": bool(dom.isActive()),
        "persistent": bool(dom.isPersistent()),
        "vcpus": vcpus,
        "memory_mib": memory_kib // 1024,
        "domain_type": root.get("type"),
        "cpu_mode": None if cpu is None else cpu.get("mode"),
        "disks": domain_disks(xml),
    }


def pool_facts(pool):
    if pool.isActive():
        # Files written by other tools (qemu-img) show in the free space only after a refresh.
        pool.refresh(0)
    root = parse_xml(pool.XMLDesc(0))
    _state, capacity, allocation, available = pool.info()
    return {
        "name": pool.name(),
        "type": root.get("type"),
        "path": root.findtext("target/path"),
        "active": bool(pool.isActive()),
        "capacity_bytes": int(capacity),
        "allocation_bytes": int(allocation),
        "available_bytes": int(available),
    }


def gather(conn, *, name=None, uri=None, domain_types=None):
    """All facts of the host behind ``conn`` as one JSON-able dict (see kvm_host_info RETURN)."""
    caps = parse_xml(conn.getCapabilities())
    cpu = host_cpu(caps)
    model, memory_mib, cpus, _mhz, _nodes, _sockets, _cores, _threads = conn.getInfo()
    free_bytes = conn.getFreeMemory()
    domains = [domain_facts(d) for d in conn.listAllDomains(0)]
    pools = []
    for pool in conn.listAllStoragePools(0):
        try:
            pools.append(pool_facts(pool))
        except Exception as exc:  # one broken pool must not hide the host: report it as unusable
            pools.append({"name": pool.name(), "type": None, "path": None, "active": False, "capacity_bytes": 0,
                          "allocation_bytes": 0, "available_bytes": 0, "error": str(exc)})
    active = [d for d in domains if d["active"]]
    return {
        "name": name or conn.getHostname(),
        "uri": uri or conn.getURI(),
        "hostname": conn.getHostname(),
        "host_uuid": caps.findtext("host/uuid"),
        "arch": cpu["arch"] or model,
        "cpu": cpu,
        "cpus": int(cpus),
        "memory_total_mib": int(memory_mib),
        "memory_free_mib": int(free_bytes // MIB),
        "vcpus_allocated": sum(d["vcpus"] for d in active),
        "memory_allocated_mib": sum(d["memory_mib"] for d in active),
        "vcpus_defined": sum(d["vcpus"] for d in domains),
        "memory_defined_mib": sum(d["memory_mib"] for d in domains),
        "domain_types_offered": offered_domain_types(caps, cpu["arch"]),
        "domain_type": (domain_types or {}).get("domain_type"),
        "domain_type_reason": (domain_types or {}).get("reason"),
        "pools": pools,
        "domains": domains,
    }


def run(module):
    """The kvm_host_info module's result: the facts of the host at ``uri`` with the module's own options."""
    params = module.params
    uri = params["uri"]
    conn = connect_for_module(module, uri)
    try:
        verdict = None
        if params["probe_domain_type"]:
            verdict = detect_domain_type(conn, local=is_local_uri(uri), probe=not module.check_mode)
        facts = gather(conn, name=params["name"], uri=uri, domain_types=verdict)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="reading the facts of %s failed: %s" % (uri, exc))
    finally:
        conn.close()
    facts["maintenance"] = params["maintenance"]
    facts["pool"] = params["pool"]
    return dict(changed=False, host=facts)
