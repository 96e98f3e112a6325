"""The names inodes have now: ``paths_of`` walks the tree once for a set of inodes.

Used where a message or a report names files by inode (owners of a bad block, the
holders of references, poisoned ranges); never on a data or metadata hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daxfs.core.state import ROOT_INO

if TYPE_CHECKING:
    from daxfs.core.state import Core


def paths_of(core: Core, inos: set[int]) -> dict[int, str | None]:
    """A current name of each inode (None for an orphan), in one walk of the tree."""
    out: dict[int, str | None] = {}
    wanted = set()
    inodes = core.inodes
    for ino in inos:
        node = inodes.get(ino)
        if node is None or node.nlink == 0:
            out[ino] = None
        else:
            wanted.add(ino)
    stack = [("", inodes[ROOT_INO])]
    while stack and wanted:
        prefix, d = stack.pop()
        for name, child in d.entries.items():  # type: ignore[union-attr]
            if child in wanted:
                out[child] = prefix + "/" + name
                wanted.discard(child)
            cnode = inodes[child]
            if cnode.entries is not None:
                stack.append((prefix + "/" + name, cnode))
    for ino in wanted:
        out[ino] = None
    return out


__all__ = ["paths_of"]
