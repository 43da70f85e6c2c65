"""Make the repo importable as ``ansible_collections.v2kvm.migrate`` for every test."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".work", "collections")


def _link_collection():
    link = os.path.join(COLLECTIONS, "ansible_collections", "v2kvm", "migrate")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(REPO, os.path.dirname(link)), link)


_link_collection()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
