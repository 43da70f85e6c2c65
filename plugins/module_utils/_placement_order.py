# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""In which order, and how many at a time, a batch of VMs moves.

A VM moves only after every VM it depends on has moved (a database before the application
that uses it), and never more than ``concurrency`` VMs at once. The result is a list of
batches; each batch runs in parallel and ends before the next starts.
"""

from __future__ import annotations


class OrderError(Exception):
    """The dependencies cannot be satisfied (a cycle); the message names the VMs involved."""


def _find_cycle(pending, depends_on):
    """One dependency cycle among ``pending`` as a list of names (for the error message)."""
    start = sorted(pending)[0]
    path, seen = [start], {start}
    node = start
    while True:
        node = sorted(d for d in depends_on.get(node, ()) if d in pending)[0]
        if node in seen:
            return path[path.index(node):] + [node]
        path.append(node)
        seen.add(node)


def batches(names, depends_on=None, concurrency=1):
    """Batches of VM names honouring ``depends_on`` ({vm: [vms it needs first]}) and ``concurrency``.

    Dependencies on VMs outside ``names`` are already satisfied (they are not moving). Within a
    wave the input order is kept, so the caller's priority survives.
    """
    if concurrency < 1:
        raise OrderError("concurrency must be at least 1")
    depends_on = {k: [d for d in (v or ()) if d != k] for k, v in (depends_on or {}).items()}
    moving = list(dict.fromkeys(names))
    members = set(moving)
    pending = set(moving)
    done = set()
    result = []
    while pending:
        wave = [n for n in moving if n in pending
                and all(d in done or d not in members for d in depends_on.get(n, ()))]
        if not wave:
            cycle = _find_cycle(pending, depends_on)
            raise OrderError("the declared dependencies form a cycle (%s): remove one of these dependencies"
                             % " -> ".join(cycle))
        for start in range(0, len(wave), concurrency):
            result.append(wave[start:start + concurrency])
        done.update(wave)
        pending.difference_update(wave)
    return result
