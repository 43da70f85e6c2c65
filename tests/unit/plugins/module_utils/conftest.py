"""Fixtures the module_utils tests share."""

import pytest


@pytest.fixture
def conn():
    """A connection to libvirt's in-process test driver: real libvirt objects and errors, no daemon. Its
    state is shared by the whole process, so tests name what they create uniquely."""
    libvirt = pytest.importorskip("libvirt")
    c = libvirt.open("test:///default")
    yield c
    c.close()
