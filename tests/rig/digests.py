"""The sha256 of a whole file, read in 1 MiB blocks: the tests' proof that a source stayed byte-identical."""

import hashlib


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
