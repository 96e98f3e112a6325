"""The names inodes have now: ``paths_of`` walks the tree once for a set of inodes.

Used where a message or a report names files by inode (owners of a bad block, the
holders of references, poisoned ranges); never on a data or metadata hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daxfs.core.namespace import split_path
from daxfs.core.state import ROOT_INO

if TYPE_CHECKING:
    from daxfs.core.state import Core


def paths_of(core: Core, inos: set[int], hints: dict[int, str] | None = None) -> dict[int, str | None]:
    """A current name of each inode (None for an orphan), in one walk of the tree.

    ``hints``: a path each inode was known by; used when it still names that inode
    (so a file with several names is listed under the one its user gave).
    """
    out: dict[int, str | None] = {}
    wanted = set()
    inodes = core.inodes
    for ino in inos:
        node = inodes.get(ino)
        if node is None or node.nlink == 0:
            out[ino] = None
            continue
        hint = hints.get(ino) if hints else None
        if hint is not None:
            try:
                if core.resolve(hint)[2] == ino:
                    components = split_path(hint)[0]
                    if ".." not in components and "." not in components:
                        out[ino] = "/" + "/".join(components)
                        continue
            except (OSError, ValueError):
                pass
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
