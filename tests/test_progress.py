"""One progress mechanism for the command line's bars and fsspec's callbacks.

``transfer.copy_stream`` reports to anything with fsspec's ``Callback`` methods:
the CLI hands it a ``TerminalProgress`` (a tqdm bar on a terminal), ``daxfs://``
hands it the caller's callback (tests/test_fsspec.py).
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from daxfs.adapters.transfer import COPY_CHUNK, TerminalProgress, copy_stream


class Recorder:
    """A progress that keeps every size and update it hears."""

    def __init__(self) -> None:
        self.sizes: list[int | None] = []
        self.updates: list[int] = []

    def set_size(self, size: int | None) -> None:
        self.sizes.append(size)

    def relative_update(self, inc: int = 1) -> None:
        self.updates.append(inc)


def test_copy_stream_reports_the_total_then_every_chunk() -> None:
    payload = os.urandom(2 * COPY_CHUNK + 5)
    sink = io.BytesIO()
    recorder = Recorder()
    assert copy_stream(io.BytesIO(payload), sink, total=len(payload), progress=recorder) == len(payload)
    assert sink.getvalue() == payload
    assert recorder.sizes == [len(payload)]
    assert recorder.updates == [COPY_CHUNK, COPY_CHUNK, 5]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_is_a_callback_sized_then_advanced() -> None:
    screen = FakeTerminal()
    with TerminalProgress("copy", screen) as bar:
        bar.set_size(300 * 1024)
        bar.relative_update(100 * 1024)
        bar.relative_update(200 * 1024)
        assert bar.bar is not None
        assert (bar.bar.total, bar.bar.n) == (300 * 1024, 300 * 1024)
    # tqdm redraws at most every 0.1 s, so the screen shows the size, not every step.
    assert "copy:" in screen.getvalue() and "/300k" in screen.getvalue()


def test_terminal_progress_stays_silent_off_a_terminal() -> None:
    quiet = io.StringIO()
    with TerminalProgress("copy", quiet) as bar:
        bar.set_size(10)
        bar.relative_update(10)
    assert quiet.getvalue() == ""


def _read_all(fd: int, child: subprocess.Popen[bytes]) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:                   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    child.wait(30)
    return out


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_cli_put_draws_its_bar_on_a_terminal(shm_pool: str, tmp_path: Path) -> None:
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(3 * COPY_CHUNK))
    controller, terminal = pty.openpty()
    # A terminal 100 columns wide: tqdm draws nothing on one of width 0.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env: dict[str, Any] = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-m", "daxfs", "put", str(local), f"{shm_pool}:/big.bin"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
                             env=env)
    os.close(terminal)
    try:
        shown = _read_all(controller, child).decode(errors="replace")
    finally:
        os.close(controller)
    assert child.returncode == 0, shown
    assert "put /big.bin" in shown and "/12.0M" in shown, shown
