"""The reference the differential and path tests compare daxfs with: a real /dev/shm
directory, driven through ``os``, seen as if it were a chroot (daxfs's root)."""

from __future__ import annotations

import os

PATH_MAX = 4096


class ReferenceTree:
    """A real /dev/shm directory playing the volume's root, driven through os."""

    def __init__(self, root: str) -> None:
        self.root = root

    def real(self, path: str, *, for_rmdir: bool = False) -> str:
        """The host path naming what ``path`` names in a chroot at ``self.root``.

        The path is passed on as written (so the kernel walks it and reports
        its own errors, in its own order) except that a ``..`` taken at the
        root is dropped, which is what a chroot does with it.  With no
        symbolic links, ``..`` can only be at the root when every name before
        it is: a ``..`` after a file or a missing name is still there for the
        kernel to refuse.  rmdir's errors depend on what the last component
        is (EBUSY for ``/``, EINVAL for ``.``, ENOTEMPTY for ``..``, all
        decided before anything is looked up), so for rmdir a dropped final
        ``..`` is put back and ``/`` is the host's ``/``.
        """
        if path == "":
            return ""                                   # ENOENT, as os says
        if "\0" in path or len(os.fsencode(path)) >= PATH_MAX:
            return self.root + "/" + path              # ValueError / ENAMETOOLONG before any walk
        trailing = "/" if path.endswith("/") else ""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return "/" if for_rmdir else self.root + "/."
        kept: list[str] = []
        depth = 0
        last_dropped = False
        for part in parts:
            last_dropped = False
            if part == "..":
                if depth == 0:                          # at the root: stays at the root
                    last_dropped = True
                    continue
                depth -= 1
            elif part != ".":
                depth += 1
            kept.append(part)
        if for_rmdir and last_dropped:
            return self._join(kept) + "/.." + trailing   # ENOTEMPTY, decided before any lookup
        if not kept:
            return self.root + "/." + trailing
        return self._join(kept) + trailing

    def _join(self, parts: list[str]) -> str:
        return self.root + "".join("/" + p for p in parts)
