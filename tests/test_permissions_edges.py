"""``volume/permissions.py``'s rules, called on a volume's core in this process (found by a
mutation run over it: ``test_arbiter_trust`` checks them through the arbiter, in other
processes, where a mutated copy is never loaded).  The expected answers are the rules of
Linux's ``generic_permission`` and of the syscalls, as the module's docstring states them:

- ``allowed``: the owner's bits for the owner (even where the group's or the others' would
  allow more), the group's for a member (primary or supplementary group), the others'
  for everyone else; every wanted bit must be there; root passes.
- ``walk``: search (x) on every directory on the way, the ones a symlink on the way
  leads through included, and the last one's target only when it is followed; a path
  that stops early (missing, not a directory) is still refused for the directories it
  went through.
- ``may_change_name``: write and search on the directory; in a sticky directory, removing
  another user's entry needs owning it or the directory (a name that does not exist yet
  needs neither).
- ``may_open``: read and write bits as asked, creation as ``may_change_name``.
- ``may_setattr``: chmod and explicit times by the owner only, chown of the uid by root
  only, of the gid by the owner to one of its groups, utime to now by the owner or a
  writer.
- ``may_list``: read on a directory (a file is listed by its name: no check).
- ``pool_access``: the R and W bits of the pool file's mode that apply to the caller.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from _small_volume import small_volume, write_file
from daxfs.core import Core
from daxfs.volume import Volume, permissions
from daxfs.volume.permissions import R, W, X, Credentials

OWNER, GROUP, OTHER = 1000, 2000, 3000
MEMBER = Credentials(1001, GROUP)                              # the group is its primary group
SUPPLEMENTARY = Credentials(1002, 50, frozenset({7, GROUP}))   # ... one of its other groups
STRANGER = Credentials(OTHER, 60, frozenset({61}))
THE_OWNER = Credentials(OWNER, 99)
ROOT = Credentials(0, 0)


def _volume() -> tuple[Volume, Core]:
    """``/d`` (0755, OWNER:GROUP) holding ``/d/f`` (0640, OWNER:GROUP), ``/closed`` (0700,
    OWNER), ``/closed/inner`` and ``/closed/inner/x``, a sticky world-writable ``/tmp`` with
    an entry of OWNER's and one of the stranger's, and links into ``/closed``."""
    vol = small_volume()
    vol.mkdir("/d")
    write_file(vol, "/d/f", b"x")
    vol.mkdir("/closed")
    vol.mkdir("/closed/inner")
    write_file(vol, "/closed/inner/x", b"")
    vol.mkdir("/tmp")
    write_file(vol, "/tmp/mine", b"")
    write_file(vol, "/tmp/theirs", b"")
    vol.symlink("/closed/inner", "/d/toinner")
    vol.symlink("/closed/inner/x", "/d/tox")
    vol.symlink("/d/f", "/d/tof")
    for path, mode, uid, gid in (("/d", 0o755, OWNER, GROUP), ("/d/f", 0o640, OWNER, GROUP),
                                 ("/closed", 0o700, OWNER, GROUP), ("/closed/inner", 0o777, OWNER, GROUP),
                                 ("/closed/inner/x", 0o666, OWNER, GROUP), ("/tmp", 0o1777, 0, 0),
                                 ("/tmp/mine", 0o644, OWNER, GROUP), ("/tmp/theirs", 0o644, OTHER, 60)):
        vol.chmod(path, mode)
        vol.chown(path, uid, gid)
    return vol, vol._journal.core


def _code(call: Callable[[], None]) -> int:
    """0 if the call allows, else the errno it refuses with (the path named)."""
    try:
        call()
    except OSError as exc:
        assert exc.filename is not None
        return exc.errno
    return 0


# allowed, require, pool_access ----------------------------------------------------------


@pytest.mark.parametrize("mode, creds, expected", [
    # the owner's bits apply to the owner, even where the others would give more
    (0o640, THE_OWNER, R | W), (0o047, THE_OWNER, 0), (0o700, THE_OWNER, R | W | X), (0o100, THE_OWNER, X),
    # the group's bits to a member by its primary or a supplementary group, nothing else
    (0o640, MEMBER, R), (0o407, MEMBER, 0), (0o070, SUPPLEMENTARY, R | W | X), (0o020, SUPPLEMENTARY, W),
    # the others' to everyone else
    (0o664, STRANGER, R), (0o773, STRANGER, W | X), (0o001, STRANGER, X), (0o770, STRANGER, 0),
    (0o000, ROOT, R | W | X),
])
def test_allowed_takes_one_class_of_bits(mode: int, creds: Credentials, expected: int) -> None:
    vol, core = _volume()
    vol.chmod("/d/f", mode)
    node = core.inodes[vol.stat("/d/f").st_ino]
    for want in range(1, 8):
        assert permissions.allowed(node, creds, want) == (want & expected == want), (oct(mode), want)
        if want & expected == want:
            permissions.require(node, creds, want, "/d/f")
        else:
            with pytest.raises(PermissionError) as info:
                permissions.require(node, creds, want, "/d/f")
            assert info.value.errno == errno.EACCES and info.value.filename == "/d/f"


def test_credentials() -> None:
    assert ROOT.root and not Credentials(1, 0).root
    assert Credentials(5, 6).groups == frozenset()
    assert SUPPLEMENTARY.in_group(50) and SUPPLEMENTARY.in_group(GROUP) and not SUPPLEMENTARY.in_group(8)


@pytest.mark.parametrize("mode, creds, expected", [
    (0o640, THE_OWNER, R | W), (0o460, THE_OWNER, R), (0o777, THE_OWNER, R | W),   # x never counts
    (0o640, MEMBER, R), (0o420, SUPPLEMENTARY, W), (0o706, MEMBER, 0),
    (0o646, STRANGER, R | W), (0o662, STRANGER, W), (0o660, STRANGER, 0),
    (0o000, ROOT, R | W),
])
def test_pool_access(mode: int, creds: Credentials, expected: int) -> None:
    assert permissions.pool_access(mode, OWNER, GROUP, creds) == expected


# walk -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, follow, owner, stranger", [
    ("/d/f", None, 0, 0),
    ("/closed", None, 0, 0),                         # the last name's own x is not needed
    ("/closed/inner", None, 0, errno.EACCES),
    ("/closed/missing/deeper", None, 0, errno.EACCES),   # stops at ENOENT, refused all the same
    ("/closed/inner/x/y", None, 0, errno.EACCES),        # ... or at ENOTDIR
    ("/d/toinner/x", None, 0, errno.EACCES),         # a link on the way leads through /closed
    ("/d/tox", None, 0, 0),                          # the last link, not followed
    ("/d/tox", False, 0, 0),
    ("/d/tox", True, 0, errno.EACCES),               # followed
    ("/d/toinner/", False, 0, errno.EACCES),         # a trailing slash follows it even for lstat
])
def test_walk_needs_search_on_the_way(path: str, follow: bool | None, owner: int, stranger: int) -> None:
    vol, core = _volume()
    assert _code(lambda: permissions.walk(core, path, THE_OWNER, follow)) == owner
    assert _code(lambda: permissions.walk(core, path, STRANGER, follow)) == stranger
    assert _code(lambda: permissions.walk(core, path, ROOT, follow)) == 0
    vol.chmod("/", 0o700)                             # only root may search the root now
    assert _code(lambda: permissions.walk(core, path, THE_OWNER, follow)) == errno.EACCES
    assert _code(lambda: permissions.walk(core, path, ROOT, follow)) == 0


def test_walk_of_the_group_member_uses_the_group_bits() -> None:
    vol, core = _volume()
    vol.chmod("/closed", 0o710)
    assert _code(lambda: permissions.walk(core, "/closed/inner/x", MEMBER)) == 0
    assert _code(lambda: permissions.walk(core, "/closed/inner/x", STRANGER)) == errno.EACCES


# may_change_name ------------------------------------------------------------------------


@pytest.mark.parametrize("path, creds, expected", [
    ("/d/new", THE_OWNER, 0), ("/d/f", THE_OWNER, 0),
    ("/d/new", MEMBER, errno.EACCES), ("/d/f", STRANGER, errno.EACCES),   # r-x: no w
    ("/closed/inner/new", STRANGER, errno.EACCES),                      # no search on the way
    ("/closed/inner/new", THE_OWNER, 0),
    ("/tmp/new", STRANGER, 0),                                          # sticky, but nothing there yet
    ("/tmp/mine", THE_OWNER, 0), ("/tmp/theirs", STRANGER, 0),          # their own entries
    ("/tmp/theirs", THE_OWNER, errno.EPERM), ("/tmp/mine", STRANGER, errno.EPERM),
    ("/tmp/mine", ROOT, 0),
    ("/d/missing/new", THE_OWNER, 0),                                   # the operation says ENOENT
])
def test_may_change_name(path: str, creds: Credentials, expected: int) -> None:
    _vol, core = _volume()
    assert _code(lambda: permissions.may_change_name(core, path, creds)) == expected


def test_sticky_directory_owner_may_remove_any_entry() -> None:
    vol, core = _volume()
    vol.chown("/tmp", OTHER, 60)
    assert _code(lambda: permissions.may_change_name(core, "/tmp/mine", STRANGER)) == 0   # owns the directory
    assert _code(lambda: permissions.may_change_name(core, "/tmp/theirs", THE_OWNER)) == errno.EPERM
    vol.chmod("/tmp", 0o777)                                  # not sticky: the w on it is enough
    assert _code(lambda: permissions.may_change_name(core, "/tmp/theirs", THE_OWNER)) == 0
    vol.chmod("/tmp", 0o1775)                                 # sticky, but no w for others
    assert _code(lambda: permissions.may_change_name(core, "/tmp/new", THE_OWNER)) == errno.EACCES
    vol.chmod("/tmp", 0o1776)                                 # w without x is not enough
    assert _code(lambda: permissions.may_change_name(core, "/tmp/new", THE_OWNER)) == errno.EACCES


# may_open ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, creds, read, write, create, expected", [
    ("/d/f", THE_OWNER, True, True, False, 0),
    ("/d/f", MEMBER, True, False, False, 0),
    ("/d/f", MEMBER, False, True, False, errno.EACCES),
    ("/d/f", MEMBER, True, True, True, errno.EACCES),          # it exists: create asks nothing more
    ("/d/f", STRANGER, True, False, False, errno.EACCES),
    ("/d/f", STRANGER, False, False, False, 0),                # no access asked (O_PATH-like)
    ("/d/tof", MEMBER, True, False, False, 0),                 # the link is followed to /d/f
    ("/d/tof", MEMBER, False, True, False, errno.EACCES),
    ("/d/tox", STRANGER, True, False, False, errno.EACCES),    # following it goes through /closed
    ("/d/new", MEMBER, False, True, True, errno.EACCES),       # creating needs w on /d
    ("/d/new", THE_OWNER, False, True, True, 0),
    ("/d/new", STRANGER, True, False, False, 0),               # missing, no create: ENOENT is the open's
    ("/tmp/new", STRANGER, True, True, True, 0),
    ("/closed/inner/x", THE_OWNER, True, True, False, 0),
    ("/closed/inner/x", MEMBER, True, False, False, errno.EACCES),
])
def test_may_open(path: str, creds: Credentials, read: bool, write: bool, create: bool, expected: int) -> None:
    _vol, core = _volume()
    assert _code(lambda: permissions.may_open(core, path, creds, read=read, write=write, create=create)) == expected
    assert _code(lambda: permissions.may_open(core, path, ROOT, read=read, write=write, create=create)) == 0


# may_setattr ------------------------------------------------------------------------------


@pytest.mark.parametrize("creds, kwargs, expected", [
    (THE_OWNER, dict(mode=True), 0),
    (MEMBER, dict(mode=True), errno.EPERM),
    (THE_OWNER, dict(times=True), 0),
    (STRANGER, dict(times=True), errno.EPERM),
    (THE_OWNER, dict(owner=(OWNER, None)), 0),                   # chown to itself: no change
    (THE_OWNER, dict(owner=(OTHER, None)), errno.EPERM),         # giving a file away: root only
    (THE_OWNER, dict(owner=(None, GROUP)), 0),                   # its gid as it is
    (THE_OWNER, dict(owner=(None, 99)), 0),                      # its own primary group
    (THE_OWNER, dict(owner=(None, 7)), errno.EPERM),             # a group it is not in
    (Credentials(OWNER, 99, frozenset({7})), dict(owner=(None, 7)), 0),   # a supplementary one
    (MEMBER, dict(owner=(None, GROUP)), errno.EPERM),            # not the owner: even "no change"
    (MEMBER, dict(owner=(None, 1001)), errno.EPERM),
    (MEMBER, dict(), 0),                                         # nothing asked
    (MEMBER, dict(touch=True), errno.EACCES),                    # r only for the group
    (THE_OWNER, dict(touch=True), 0),
    (STRANGER, dict(touch=True), 0),                             # a writer may touch: see below
    (ROOT, dict(mode=True, owner=(5, 6), times=True, touch=True), 0),
])
def test_may_setattr(creds: Credentials, kwargs: dict, expected: int) -> None:
    vol, core = _volume()
    vol.chmod("/d/f", 0o646)                                     # others may write, the group may not
    assert _code(lambda: permissions.may_setattr(core, "/d/f", creds, **kwargs)) == expected
    assert _code(lambda: permissions.may_setattr(core, "/d/tof", creds, **kwargs)) == expected   # followed


def test_may_setattr_touch_by_a_group_writer_and_nobody_else() -> None:
    vol, core = _volume()
    vol.chmod("/d/f", 0o660)
    assert _code(lambda: permissions.may_setattr(core, "/d/f", MEMBER, touch=True)) == 0
    assert _code(lambda: permissions.may_setattr(core, "/d/f", STRANGER, touch=True)) == errno.EACCES
    vol.chmod("/d/f", 0o000)
    assert _code(lambda: permissions.may_setattr(core, "/d/f", THE_OWNER, touch=True)) == 0   # the owner
    assert _code(lambda: permissions.may_setattr(core, "/d/f", THE_OWNER, mode=True)) == 0


def test_may_setattr_needs_search_and_leaves_missing_names_to_the_call() -> None:
    vol, core = _volume()
    assert _code(lambda: permissions.may_setattr(core, "/closed/inner/x", STRANGER, touch=True)) == errno.EACCES
    assert _code(lambda: permissions.may_setattr(core, "/d/missing", STRANGER, mode=True)) == 0
    assert _code(lambda: permissions.may_setattr(core, "/d/tox", MEMBER, touch=True)) == errno.EACCES


# may_list ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, creds, expected", [
    ("/d", STRANGER, 0), ("/closed", STRANGER, errno.EACCES), ("/closed", THE_OWNER, 0),
    ("/d/f", STRANGER, 0),                                       # a file: no read needed to stat it
    ("/d/toinner", STRANGER, errno.EACCES),                      # followed, through /closed
    ("/closed/inner", MEMBER, errno.EACCES),
    ("/d/missing", STRANGER, 0),
])
def test_may_list(path: str, creds: Credentials, expected: int) -> None:
    vol, core = _volume()
    assert _code(lambda: permissions.may_list(core, path, creds)) == expected
    vol.chmod("/d", 0o311)                                       # search, but no read
    assert _code(lambda: permissions.may_list(core, "/d", STRANGER)) == errno.EACCES
    assert _code(lambda: permissions.may_list(core, "/d", ROOT)) == 0


def test_node_of_and_parent_of() -> None:
    vol, core = _volume()
    assert permissions.node_of(core, "/d/tof").ino == vol.stat("/d/f").st_ino          # followed
    assert permissions.node_of(core, "/d/tof", None).ino == vol.lstat("/d/tof").st_ino
    assert permissions.node_of(core, "/d/missing") is None
    assert permissions.node_of(core, "/d/f/x") is None                                # ENOTDIR
    assert permissions.parent_of(core, "/d/f").ino == vol.stat("/d").st_ino
    assert permissions.parent_of(core, "/d/new").ino == vol.stat("/d").st_ino
