"""Forked: children made by ``fork`` while pool views were mapped, and when they are gone.

A child made by ``fork`` gets a copy of every mapping of its parent, so a view of pool
blocks goes on showing those blocks in the child whatever the parent then does with its
own (closes it, migrates it on a revoke).  Those blocks must not go to another file while
such a child lives (a DataLoader's workers read the arrays their parent mapped).  Before a
fork that copies a view, the parent makes a pipe: the child keeps the write end
(close-on-exec: an exec drops the child's mappings and the pipe together; a child it forks
in turn inherits both), the parent only the read end, which a thread reads until EOF —
when no process that could still show the views is left.

Invariants: every view mapped at a fork lists that fork's ``Forked`` in its ``forks``
(a list the owner keeps after the view is unmapped); ``done`` never goes back to False;
each callback runs once, after ``done``, in the thread that saw the EOF.  In the child,
the forks it inherited are its parent's business: they read as done there.
"""

from __future__ import annotations

import os
import select
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

#: views now mapped in this process (PoolView registers itself; unmapped ones drop out)
mapped: "weakref.WeakSet[Any]" = weakref.WeakSet()
_pending: set["Forked"] = set()         # forks of this process with a child that may live


class Forked:
    """The children of one fork (and whatever they forked): ``done`` once all are gone."""

    def __init__(self, fd: int | None) -> None:
        # fd None: a fork whose pipe could not be made (EMFILE).  Its children are never
        # known to be gone, so what they may show is held until this process exits.
        self._fd = -1 if fd is None else fd
        self.done = False
        self._callbacks: list[Callable[[], Any]] = []
        self._lock = threading.Lock()
        _pending.add(self)
        if fd is not None:
            threading.Thread(target=self._wait, name="daxfs-forked", daemon=True).start()

    def _wait(self) -> None:
        try:
            while os.read(self._fd, 4096):     # nobody writes: only the EOF comes
                pass
        except OSError:
            pass
        with self._lock:
            # (-1 first: a child forked from here on must not close the number, reused by then)
            fd, self._fd = self._fd, -1
            callbacks = self._end()
        os.close(fd)
        _run(callbacks)

    def _end(self) -> list[Callable[[], Any]]:
        """Mark done (the lock held); the callbacks still to run."""
        self.done = True
        _pending.discard(self)
        callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def when_done(self, callback: Callable[[], Any] | None) -> bool:
        """Run ``callback`` once the children are gone; False (nothing kept) if they are."""
        with self._lock:
            if not self.done and not self._gone_already():
                if callback is not None:
                    self._callbacks.append(callback)
                return True
            callbacks = self._end() if not self.done else []
        _run(callbacks)
        return False

    def _gone_already(self) -> bool:
        # The children may have gone before the thread ran: a caller that just reaped them
        # expects their blocks to go at once.  Nobody writes the pipe: readable means EOF.
        # (poll, not select: a descriptor numbered 1024 or more is out of select's range)
        if self._fd < 0:
            return False
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP)
        return bool(poller.poll(0))


def _run(callbacks: list[Callable[[], Any]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:       # one owner's failure must not keep the others' blocks
            pass


def when_unshown(forks: Iterable[Forked], callback: Callable[[], Any]) -> bool:
    """Run ``callback`` once no child of ``forks`` is left; False (nothing kept, the caller
    goes on now) if none is."""
    forks = list(forks)
    for forked in forks:
        if forked.when_done(lambda: when_unshown(forks, callback) or callback()):
            return True
    return False


def shown(forks: Iterable[Forked]) -> bool:
    """Whether a child of ``forks`` may still show the views they copied."""
    return any(forked.when_done(None) for forked in forks)


def children_may_show() -> bool:
    """Whether a child forked from this process may still show a pool view."""
    return shown(list(_pending))


# Each forking thread's pipe, between its hooks: another thread may fork in between (the
# hooks are Python code, and the interpreter may switch threads while they run).
_pipes: dict[int, tuple[int, int] | None] = {}


def _before_fork() -> None:
    # Always a pipe (a syscall): another thread may map a view before the fork itself.
    try:
        _pipes[threading.get_ident()] = os.pipe2(os.O_CLOEXEC)
    except OSError:
        _pipes[threading.get_ident()] = None


def _after_fork_in_parent() -> None:
    pipe = _pipes.pop(threading.get_ident(), ())
    if pipe:
        os.close(pipe[1])
    views = [view for view in list(mapped) if view.is_mapped()]
    if not views:
        if pipe:
            os.close(pipe[0])
        return
    forked = Forked(pipe[0] if pipe else None)
    for view in views:
        view.forks[:] = [f for f in view.forks if not f.done] + [forked]


def _after_fork_in_child() -> None:
    for forked in list(_pending):       # siblings' and the parent's: not this process's to wait on
        # (no lock: a parent thread may have held it at the fork; no other thread runs here)
        fd, forked._fd = forked._fd, -1
        forked.done = True
        forked._callbacks = []
        forked._lock = threading.Lock()
        if fd >= 0:
            os.close(fd)
    _pending.clear()
    mine = _pipes.pop(threading.get_ident(), None)
    if mine is not None:
        os.close(mine[0])               # the write end stays open until this process goes
    for other in _pipes.values():       # other threads' forks in the parent, under way
        if other is not None:
            os.close(other[0])
            os.close(other[1])
    _pipes.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)

__all__ = ["Forked", "mapped", "when_unshown", "shown", "children_may_show"]
