# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement of 1000 VMs over 50 hosts with every filter on: goal <= 1 s.

    .venv/bin/python bench/bench_placement.py
Prints the best of 5 runs and its ratio to the goal (< 1.0 meets it).
"""

import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), ".work", "collections"))

from ansible_collections.v2kvm.migrate.plugins.module_utils._placement import place  # noqa: E402

GOAL_SECONDS = 1.0
GIB = 1024 ** 3


def fleet(seed=5):
    rng = random.Random(seed)  # noqa: S311 - a reproducible synthetic fleet, not secrets
    hosts = [{"name": f"kvm{i:02d}", "uri": f"qemu+ssh://kvm{i:02d}/system", "cpus": rng.choice([32, 48, 64]),
              "memory_total_mib": rng.choice([256, 384, 512]) * 1024, "memory_allocated_mib": rng.randint(0, 64) * 1024,
              "vcpus_allocated": rng.randint(0, 64), "arch": "x86_64",
              "cpu": {"arch": "x86_64", "features": ["sse4.2", "avx", "avx2", "aes"][: rng.randint(2, 4)]},
              "domain_types_offered": ["kvm", "qemu"], "maintenance": i % 17 == 0,
              "pools": [{"name": "v2kvm", "active": True, "available_bytes": rng.randint(2, 20) * 1024 * GIB}],
              "domains": [{"name": f"old{i}-{j}", "active": True} for j in range(20)]}
             for i in range(50)]
    vms = [{"id": f"vm{i:04d}", "name": f"vm{i:04d}", "vcpus": rng.choice([1, 2, 4, 8]),
            "memory_mib": rng.choice([1, 2, 4, 8, 16]) * 1024, "disk_bytes": rng.choice([20, 40, 100]) * GIB,
            "cpu_features": ["avx"] if i % 3 == 0 else [],
            "anti_affinity": f"group{i % 100}" if i % 4 == 0 else None}
           for i in range(1000)]
    return hosts, vms


def main():
    hosts, vms = fleet()
    best = None
    for _attempt in range(5):
        started = time.perf_counter()
        result = place(vms, hosts, {"strategy": "spread", "cpu_allocation_ratio": 4.0})
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    print(f"placement: {len(vms)} VMs over {len(hosts)} hosts: {len(result['assignments'])} placed, "
          f"{len(result['unplaced'])} unplaced")
    print(f"placement: best of 5 {best:.3f} s; goal {GOAL_SECONDS:.1f} s; ratio {best / GOAL_SECONDS:.2f}")
    return 0 if best <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
