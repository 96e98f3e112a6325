"""A forked child that checks, when told, what its copy of a parent's buffer holds."""

from __future__ import annotations

import os


def child_reading_later(buffer: memoryview, expect: int) -> tuple[int, int]:
    """Fork a child that, when told, checks its copy of ``buffer`` holds only the byte
    ``expect``: (its pid, the descriptor that tells it).  ``reap`` tells it and waits."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(go_w)
            os.read(go_r, 1)
            code = 0 if set(bytes(buffer)) == {expect} else 1
        finally:
            os._exit(code)
    os.close(go_r)
    return pid, go_w


def reap(pid: int, go: int) -> int:
    """Tell the child to look, and its exit status: 0 when its copy held what was expected."""
    os.write(go, b"x")
    os.close(go)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
