# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Standalone v2kvm.migrate web dashboard: many runs report to it over HTTP with a token.

    V2KVM_WEB_TOKEN=$(openssl rand -hex 24) python3 scripts/web_dashboard.py --host 0.0.0.0 --port 8765 \
        --tls-cert cert.pem --tls-key key.pem

Runs point the ``v2kvm.migrate.web`` callback at it (V2KVM_WEB_URL + V2KVM_WEB_TOKEN). Options:
``--help`` and docs/web-dashboard.md.
"""

import os
import sys
import types


def _make_importable():
    """Import the collection from this checkout, whether or not it sits in an ansible_collections tree.

    Outside such a tree the package ``ansible_collections.v2kvm.migrate`` is declared in memory with this
    checkout as its path: no folder of symlinks on disk, so nothing is left behind, whatever ends the process."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = repo.split(os.sep)
    if parts[-3:-2] == ["ansible_collections"]:
        sys.path.insert(0, os.sep.join(parts[:-3]) or os.sep)
        return
    for name, path in (("ansible_collections", []), ("ansible_collections.v2kvm", []),
                       ("ansible_collections.v2kvm.migrate", [repo])):
        package = types.ModuleType(name)
        package.__path__ = path
        sys.modules[name] = package


if __name__ == "__main__":
    _make_importable()
    from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_server import main

    sys.exit(main())
