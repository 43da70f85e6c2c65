# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choose a KVM host for every VM of a batch: filters, then weighers, with no overcommit.

The whole batch is placed in one call (the playbook runs it once, not once per fork), so each
assignment consumes capacity before the next VM is looked at: two VMs migrating in parallel
forks can never both be given the last free GiB of a host. Plain Python, no libvirt.

Hosts are kvm_host_info facts (``name``, ``cpus``, ``memory_total_mib``, ``memory_allocated_mib``,
``vcpus_allocated``, ``pools``, ``cpu``, ``domains``) plus optional ``maintenance`` and ``pool``.
VMs are ``{"id", "name", "vcpus", "memory_mib", "disk_bytes", ...}`` (see placement RETURN).

``run`` is the placement module's entry: the placement, then the move order (_placement_order).
"""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils._placement_order import OrderError, batches

MIB = 1024 * 1024
STRATEGIES = ("spread", "stack")


class PlacementError(Exception):
    """The input cannot be placed at all (not: some VM fits nowhere); the message names the fix."""


class _HostState:
    """Capacity of one host as the batch consumes it."""

    __slots__ = ("name", "facts", "maintenance", "pool", "pool_free", "pool_error", "ram_cap", "ram_used",
                 "cpu_cap", "cpu_used", "arch", "features", "domain_types", "groups", "vm_names")

    def __init__(self, facts, options, maintenance_names):
        self.name = facts["name"]
        self.facts = facts
        self.maintenance = bool(facts.get("maintenance")) or self.name in maintenance_names
        self.pool = facts.get("pool") or options["pool"]
        pool = next((p for p in facts.get("pools") or [] if p.get("name") == self.pool), None)
        if pool is None:
            self.pool_free, self.pool_error = 0, "storage pool %s does not exist here" % self.pool
        elif not pool.get("active", True):
            self.pool_free, self.pool_error = 0, "storage pool %s is not active" % self.pool
        else:
            self.pool_free = int(pool.get("available_bytes") or 0) * options["disk_allocation_ratio"]
            self.pool_error = None
        total = int(facts.get("memory_total_mib") or 0)
        self.ram_cap = total * options["ram_allocation_ratio"] - options["reserved_host_memory_mib"]
        self.ram_used = int(facts.get("memory_allocated_mib") or 0)
        self.cpu_cap = int(facts.get("cpus") or 0) * options["cpu_allocation_ratio"]
        self.cpu_used = int(facts.get("vcpus_allocated") or 0)
        cpu = facts.get("cpu") or {}
        self.arch = facts.get("arch") or cpu.get("arch")
        self.features = frozenset(cpu.get("features") or ())
        offered = facts.get("domain_types_offered") or []
        self.domain_types = frozenset(offered)
        self.vm_names = {d.get("name") for d in facts.get("domains") or [] if d.get("active", True)}
        self.groups = set()

    def ram_free(self):
        return self.ram_cap - self.ram_used

    def cpu_free(self):
        return self.cpu_cap - self.cpu_used


def _normalize_options(options):
    opts = {
        "strategy": "spread",
        "pool": "v2kvm",
        "cpu_allocation_ratio": 4.0,
        "ram_allocation_ratio": 1.0,
        "disk_allocation_ratio": 1.0,
        "reserved_host_memory_mib": 0,
        "maintenance": [],
        "anti_affinity_groups": {},
    }
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    if opts["strategy"] not in STRATEGIES:
        raise PlacementError("strategy %r is not known: use one of %s" % (opts["strategy"], ", ".join(STRATEGIES)))
    for key in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
        opts[key] = float(opts[key])
        if opts[key] <= 0:
            raise PlacementError("%s must be greater than 0 (1.0 means no overcommit)" % key)
    return opts


def _vm_groups(vm, group_members):
    groups = set()
    own = vm.get("anti_affinity")
    if isinstance(own, str) and own:
        groups.add(own)
    elif isinstance(own, (list, tuple)):
        groups.update(g for g in own if g)
    groups.update(group_members.get(vm["name"], ()))
    return groups


def _check_vm(vm, index):
    for key in ("name", "vcpus", "memory_mib"):
        if vm.get(key) in (None, ""):
            raise PlacementError("VM #%d (%s) has no %s: every VM needs name, vcpus and memory_mib"
                                 % (index, vm.get("id") or vm.get("name") or "?", key))
    if int(vm["vcpus"]) < 1 or int(vm["memory_mib"]) < 1:
        raise PlacementError("VM %s: vcpus and memory_mib must be at least 1" % vm["name"])


def _reject_reason(vm, host, groups, need_disk):
    """Why ``host`` cannot take ``vm`` now, or None when it can (the filters, cheapest first)."""
    if host.maintenance:
        return "host is in maintenance (no new placements)"
    if vm.get("current_host") == host.name:
        return "the VM is already on this host (source node)"
    if vm.get("arch") and host.arch and vm["arch"] != host.arch:
        return "architecture %s, the VM needs %s" % (host.arch, vm["arch"])
    memory = int(vm["memory_mib"])
    if memory > host.ram_free():
        return "not enough RAM: needs %d MiB, %d MiB left of %d MiB (after ram_allocation_ratio and reserve)" % (
            memory, max(0, host.ram_free()), host.ram_cap)
    vcpus = int(vm["vcpus"])
    if vcpus > host.cpu_free():
        return "not enough vCPUs: needs %d, %g left of %g (%d CPUs x cpu_allocation_ratio)" % (
            vcpus, max(0, host.cpu_free()), host.cpu_cap, int(host.facts.get("cpus") or 0))
    if host.pool_error:
        return host.pool_error
    if need_disk > host.pool_free:
        return "not enough disk in pool %s: needs %d MiB, %d MiB free" % (
            host.pool, need_disk // MIB, max(0, host.pool_free) // MIB)
    wanted_type = vm.get("domain_type")
    if wanted_type and wanted_type != "auto" and host.domain_types and wanted_type not in host.domain_types:
        return "domain type %s is not offered (host offers %s)" % (wanted_type, ", ".join(sorted(host.domain_types)))
    features = vm.get("cpu_features")
    if features:
        missing = [f for f in features if f not in host.features]
        if missing:
            return "CPU lacks features the VM needs: %s" % ", ".join(missing)
    clash = groups & host.groups
    if clash:
        return "anti-affinity group %s already has a VM here" % ", ".join(sorted(clash))
    return None


def _score(host, strategy):
    ram_left = host.ram_free() / host.ram_cap if host.ram_cap > 0 else 0.0
    cpu_left = host.cpu_free() / host.cpu_cap if host.cpu_cap > 0 else 0.0
    free = ram_left + 0.5 * cpu_left
    return free if strategy == "spread" else -free


def _check_vms(vms):
    ids = set()
    for index, vm in enumerate(vms):
        _check_vm(vm, index)
        vm_id = vm.get("id") or vm["name"]
        if vm_id in ids:
            raise PlacementError("VM id %s appears twice in the batch: give each VM a unique id" % vm_id)
        ids.add(vm_id)


def _host_states(hosts, opts):
    """Each host's capacity, with the anti-affinity groups of the VMs it already runs."""
    names = [h.get("name") for h in hosts]
    if len(set(names)) != len(names):
        raise PlacementError("host names must be unique; duplicates: %s"
                             % ", ".join(sorted({n for n in names if names.count(n) > 1})))
    maintenance = set(opts["maintenance"] or ())
    states = [_HostState(h, opts, maintenance) for h in hosts]
    group_members = {}
    for group, members in (opts["anti_affinity_groups"] or {}).items():
        for member in members or ():
            group_members.setdefault(member, set()).add(group)
    for state in states:
        for vm_name in state.vm_names:
            state.groups.update(group_members.get(vm_name, ()))
    return states, group_members


def _rank(vm, states, groups, need_disk, strategy):
    """(best host, its score, runner-up, {host: why rejected}) for one VM."""
    rejected = {}
    best = best_score = runner_up = None
    for state in states:
        reason = _reject_reason(vm, state, groups, need_disk)
        if reason is not None:
            rejected[state.name] = reason
            continue
        score = _score(state, strategy)
        if best is None or score > best_score:
            runner_up = best
            best, best_score = state, score
        elif runner_up is None or score > _score(runner_up, strategy):
            runner_up = state
    return best, best_score, runner_up, rejected


def _place_one(vm, states, groups, strategy):
    """The VM's assignment entry; the chosen host's capacity is consumed at once."""
    need_disk = int(vm.get("disk_bytes") or 0)
    best, best_score, runner_up, rejected = _rank(vm, states, groups, need_disk, strategy)
    entry = {"id": vm.get("id") or vm["name"], "name": vm["name"], "rejected": rejected}
    if best is None:
        entry.update(host=None, uri=None, pool=None, score=None,
                     reason="no host can take %s (%d MiB, %d vCPUs, %d MiB disk): %s" % (
                         vm["name"], int(vm["memory_mib"]), int(vm["vcpus"]), need_disk // MIB,
                         "; ".join("%s: %s" % item for item in sorted(rejected.items())) or "no candidate hosts"))
        return entry
    best.ram_used += int(vm["memory_mib"])
    best.cpu_used += int(vm["vcpus"])
    best.pool_free -= need_disk
    best.groups.update(groups)
    best.vm_names.add(vm["name"])
    entry.update(host=best.name, uri=best.facts.get("uri"), pool=best.pool, score=round(best_score, 4),
                 reason="%s: %s wins (%s, score %.3f%s); %d of %d hosts passed the filters" % (
                     vm["name"], best.name, strategy, best_score,
                     ", next best %s" % runner_up.name if runner_up else "",
                     len(states) - len(rejected), len(states)))
    return entry


def _host_load(state):
    return {"name": state.name, "maintenance": state.maintenance, "pool": state.pool,
            "memory_used_mib": state.ram_used, "memory_capacity_mib": int(state.ram_cap),
            "vcpus_used": state.cpu_used, "vcpus_capacity": state.cpu_cap,
            "pool_free_bytes": int(max(0, state.pool_free))}


def place(vms, hosts, options=None):
    """Assign each VM a host. Returns {"assignments": [...], "unplaced": [...], "hosts": [...]}.

    Every assignment says why that host won (score, runner-up) and every candidate that lost says
    why it was rejected. VMs are placed biggest first (memory, then vCPUs, then disk), which packs
    better than input order; results come back in input order.
    """
    opts = _normalize_options(options)
    states, group_members = _host_states(hosts, opts)
    _check_vms(vms)

    def biggest_first(i):
        return (-int(vms[i]["memory_mib"]), -int(vms[i]["vcpus"]), -int(vms[i].get("disk_bytes") or 0), i)

    results = [None] * len(vms)
    for index in sorted(range(len(vms)), key=biggest_first):
        vm = vms[index]
        results[index] = _place_one(vm, states, _vm_groups(vm, group_members), opts["strategy"])
    return {
        "assignments": [r for r in results if r["host"]],
        "unplaced": [r for r in results if not r["host"]],
        "hosts": [_host_load(s) for s in states],
    }


def plan_lines(result):
    """Human-readable plan: one line per VM, then the hosts' resulting load."""
    lines = [r["reason"] for r in result["assignments"]] + [r["reason"] for r in result["unplaced"]]
    for host in result["hosts"]:
        lines.append("host %s%s: %d/%d MiB RAM, %g/%g vCPUs after placement" % (
            host["name"], " (maintenance)" if host["maintenance"] else "", host["memory_used_mib"],
            host["memory_capacity_mib"], host["vcpus_used"], host["vcpus_capacity"]))
    return lines


def read_maintenance_file(path):
    """Host names listed in ``path`` (one a line, ``#`` comments); a missing file lists none."""
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


_OPTION_KEYS = ("strategy", "pool", "cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio",
                "reserved_host_memory_mib", "anti_affinity_groups")


def plan_batch(params):
    """The placement module's result for its ``params``: placement, ``by_id``, ``batches`` and ``plan``.

    Raises PlacementError or OrderError when the input cannot be planned at all.
    """
    options = {key: params[key] for key in _OPTION_KEYS}
    options["maintenance"] = list(params["maintenance"]) + read_maintenance_file(params["maintenance_file"])
    result = place(params["vms"], params["hosts"], options)
    by_id = {a["id"]: {"host": a["host"], "uri": a["uri"], "pool": a["pool"]} for a in result["assignments"]}
    # Dependencies are declared by VM name; batches are handed back by id.
    name_of = {a["id"]: a["name"] for a in result["assignments"]}
    id_of = {name: vm_id for vm_id, name in name_of.items()}
    order = batches([a["name"] for a in result["assignments"]], params["depends_on"], params["concurrency"])
    order = [[id_of[name] for name in batch] for batch in order]
    for index, batch in enumerate(order):
        for vm_id in batch:
            by_id[vm_id]["batch"] = index
    plan = plan_lines(result) + ["move batch %d: %s" % (i + 1, ", ".join(name_of[v] for v in batch))
                                 for i, batch in enumerate(order)]
    return dict(changed=False, by_id=by_id, batches=order, plan=plan, **result)


def run(module):
    """The placement module's result; the module fails when the batch cannot be planned, or when a VM
    fits nowhere and ``dry_run`` is off (with the whole plan in the failure)."""
    try:
        output = plan_batch(module.params)
    except (PlacementError, OrderError) as exc:
        module.fail_json(msg=str(exc))
    if output["unplaced"] and not module.params["dry_run"]:
        module.fail_json(msg="; ".join(u["reason"] for u in output["unplaced"]), **output)
    return output
