"""Remove what a test made on a libvirt daemon, whatever state it was left in."""

import shutil

import libvirt

UNDEFINE_ALL = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def remove_domains(conn, names):
    """Stop and undefine (with NVRAM) each named domain that exists."""
    for name in names:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(UNDEFINE_ALL)


def remove_pool(conn, name, path=None):
    """Stop and undefine the pool, then delete its directory (tests own it entirely)."""
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass
    if path:
        shutil.rmtree(path, ignore_errors=True)


def remove_migration(uri, names, pool, pool_path):
    """What one migration test leaves: its domains, its pool and the pool's directory."""
    conn = libvirt.open(uri)
    try:
        remove_domains(conn, names)
        remove_pool(conn, pool, pool_path)
    finally:
        conn.close()
