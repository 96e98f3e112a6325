"""Set-ID bits the kernel leaves the FUSE mount to clear.

A write through the kernel's page cache has the kernel clear a file's set-user-ID and
set-group-ID bits (``file_remove_privs``) unless the writer holds CAP_FSETID; a write that
bypasses the cache (``-o direct_io``) and an open that truncates (libfuse takes O_TRUNC
into the open) leave that to the server.  Invariant: when it cannot tell whether the
writer may keep them, the mount clears them (the safe side).
"""

from __future__ import annotations

import os
import stat as st

CAP_FSETID = 4


def may_keep_set_id(tid: int) -> bool:
    """Whether the writing thread ``tid`` (as the kernel names a request's caller) holds
    CAP_FSETID in this process's own user namespace.  False whenever that is not certain: a
    caller outside our pid namespace (0), a /proc of another pid namespace, a caller in
    another user namespace (its capabilities there do not cover our files)."""
    if tid <= 0:
        return False
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return False
        if os.stat(f"/proc/{tid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            return False
        with open(f"/proc/{tid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_FSETID & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def set_id_to_drop(mode: int) -> int:
    """The bits such a write clears, by the kernel's FUSE rule: set-user-ID, and set-group-ID
    where group execute is set."""
    return mode & st.S_ISUID | (mode & st.S_ISGID if mode & st.S_IXGRP else 0)


__all__ = ["may_keep_set_id", "set_id_to_drop"]
