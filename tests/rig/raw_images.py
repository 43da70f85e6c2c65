"""Sparse raw images with known bytes at known offsets: what conversion tests compare against."""


def write_sparse(path, size, pattern):
    """A raw image of ``size`` bytes, zero (holes) except ``pattern`` = {offset: bytes}."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset, data in pattern.items():
            handle.seek(offset)
            handle.write(data)
    return str(path)
