"""What a call does when a pin-policy wait let the volume's lock go.

A change that meets a pin or mapping under ``wait`` (or a lease under ``break``)
waits with the volume's lock let go; other threads' changes go on meanwhile.  The
waiting side (``ReferenceTable``) raises or returns so that its caller starts over
from its arguments (``LookAgain``, ``start_over``): nothing was changed before the
wait, and everything found before it — sizes, blocks, whether a file still
exists — is looked at again.  ``before_wait`` lets a thread that serves others
(the arbiter's request loop) hand its work on before it blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


class LookAgain(Exception):
    """A wait for references to go let the volume's lock go: what the caller found before it
    (sizes, blocks, even whether a file named by path still exists) may have changed.  Its
    operation starts over from its arguments; nothing was changed yet."""


def start_over(operation: Callable[..., _T], *args: object) -> _T:
    """``operation(*args)``, from the start again after each ``LookAgain``.  (``pwrite``
    has the same loop inline: one call fewer on every write.)"""
    while True:
        try:
            return operation(*args)
        except LookAgain:
            continue


_before_wait = threading.local()


def before_wait(callback: Callable[[], None] | None) -> None:
    """Run ``callback`` (in this thread) before this thread next blocks in a policy wait.

    A thread that serves other requests (the arbiter's request loop) hands
    its work to another thread first, so a waiting change never stops the requests
    that would end the wait (seed 004's I_MMAP_LOCK deadlock, across processes).
    """
    _before_wait.callback = callback


def wait_hook() -> Callable[[], None] | None:
    """This thread's ``before_wait`` callback, if any."""
    return getattr(_before_wait, "callback", None)


__all__ = ["LookAgain", "start_over", "before_wait", "wait_hook"]
