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
import tempfile


def _make_importable():
    """Import the collection from this checkout, whether or not it sits in an ansible_collections tree."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = repo.split(os.sep)
    if parts[-3:-2] == ["ansible_collections"]:
        sys.path.insert(0, os.sep.join(parts[:-3]) or os.sep)
        return
    root = tempfile.mkdtemp(prefix="v2kvm-web-collections-")
    os.makedirs(os.path.join(root, "ansible_collections", "v2kvm"))
    os.symlink(repo, os.path.join(root, "ansible_collections", "v2kvm", "migrate"))
    sys.path.insert(0, root)


if __name__ == "__main__":
    _make_importable()
    from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_server import main

    sys.exit(main())
