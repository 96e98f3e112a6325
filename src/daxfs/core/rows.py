"""An inode as a checkpoint row: the plain lists the checkpoint codec packs.

A row is ``[ino, mode, uid, gid, size, atime, mtime, ctime, extents, entries]``:
``extents`` the flat ``[fblk, nblk, pblk, flags, ...]`` list of a regular file
(else None), ``entries`` the flat ``[name, ino, ...]`` list of a directory (else
None); a symlink or special file has an eleventh field, its target or device
number.  Link counts, parents, free space and owners are derived at load, so a
row changes only when a record names its inode (see ``Journal._touched``).

``dir_row`` leaves a directory's entries as a dict: the incremental checkpoint
writer copies a large directory once and packs its names a slice at a time.
"""

from __future__ import annotations

from daxfs.core.state import Core, Inode


def inode_row(node: Inode) -> list[object]:
    """``node``'s row, sharing nothing mutable with it."""
    entries = node.entries
    if entries is not None:
        flat: list[object] = []
        for name, child in entries.items():
            flat.append(name)
            flat.append(child)
        return [node.ino, node.mode, node.uid, node.gid, node.size,
                node.atime_ns, node.mtime_ns, node.ctime_ns, None, flat]
    if node.extents is None:      # an 11th field: the symlink's target or the device number
        return [node.ino, node.mode, node.uid, node.gid, node.size, node.atime_ns, node.mtime_ns,
                node.ctime_ns, None, None, node.target if node.target is not None else node.rdev]
    return [node.ino, node.mode, node.uid, node.gid, node.size,
            node.atime_ns, node.mtime_ns, node.ctime_ns, node.extents.to_flat(), None]


def dir_row(node: Inode) -> list[object]:
    """A directory's row with its entries as a copied dict (a C-level copy, no Python loop)."""
    return [node.ino, node.mode, node.uid, node.gid, node.size,
            node.atime_ns, node.mtime_ns, node.ctime_ns, None, dict(node.entries)]  # type: ignore[arg-type]


def bad_field(core: Core) -> list[object] | None:
    """The checkpoint's third field (bad memory), or None when nothing is bad (then a
    checkpoint has two fields, as before memory failures were recorded)."""
    if core.bad or core.bad_metadata:
        return [core.bad.to_flat(), core.bad_metadata.to_flat()]
    return None


def state_rows(core: Core) -> list[object]:
    """The whole state as plain lists: ``[next_ino, rows(, bad memory)]``."""
    rows = [inode_row(node) for node in core.inodes.values()]
    bad = bad_field(core)
    return [core.next_ino, rows] if bad is None else [core.next_ino, rows, bad]


__all__ = ["inode_row", "dir_row", "bad_field", "state_rows"]
