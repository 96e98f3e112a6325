"""The README's Python examples run as written (on a scratch pool instead of /dev/shm/data.pool).

The blocks run in order, each in a fresh interpreter (the pool carries the state from one to
the next); a block that connects to the arbiter runs while ``daxfs serve`` serves the pool,
as the README's shell line beside it starts it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import entry_point_installed

README = Path(__file__).resolve().parent.parent / "README.md"
SRC = str(Path(__file__).resolve().parent.parent / "src")


def _serve(pool: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-m", "daxfs", "serve", pool], stderr=subprocess.DEVNULL, env=env)
    for _ in range(2000):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(pool + ".sock")
            return server
        except OSError:
            time.sleep(0.005)
        finally:
            probe.close()
    server.kill()
    raise AssertionError("daxfs serve did not start")


def test_readme_python_examples_run(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4, "the README lost its Python examples"
    pool = str(tmp_path / "readme.pool")
    # A daxfs installed from elsewhere, without the daxfs:// entry point (see conftest).
    register = "" if entry_point_installed() else (
        "import fsspec\nfsspec.register_implementation('daxfs', "
        "'daxfs.adapters.fsspec_fs.DaxFileSystem')\n")
    out = []
    for block in blocks:
        code = block.replace("/dev/shm/data.pool", pool)
        if "daxfs://" in code:
            code = register + code
        server = _serve(pool) if "daxfs.connect" in code else None
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                assert server.wait(30) == 0
        assert done.returncode == 0, f"{block[:200]}...\n{done.stderr[-2000:]}"
        out.append(done.stdout)
    # ... and the README's clean-up leaves nothing behind
    [cleanup] = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if b.strip() == "rm /dev/shm/data.pool"]
    subprocess.run(["bash", "-c", cleanup.replace("/dev/shm/data.pool", pool)], check=True)
    assert list(tmp_path.iterdir()) == []
    stdout = "".join(out)
    assert "Owner(" in stdout and "weights.bin" in stdout
    assert "('loader-3', " in stdout                  # the served example saw its own holder
    # the fsspec/Arrow example: 1000 rows read in place, no Arrow memory allocated
    assert "\n1000 0\n" in stdout
    assert "returned 64 MiB" in stdout                # the discard example gave the memory back


def test_readme_shell_example_runs_and_cleans_up(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "mktemp -d" in b]
    pool = str(tmp_path / "shell.pool")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # the installed command if there is one, else this interpreter's daxfs
    script = (f'daxfs() {{ "{sys.executable}" -m daxfs "$@"; }}\n'
              f"mktemp() {{ echo {scratch}; }}\nset -eo pipefail\n" + block.replace("/dev/shm/shell.pool", pool))
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "clean" in done.stdout and "weights.bin" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"]     # the pool and its side files are gone


def test_the_ci_script_runs_exactly_the_readmes_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    [command] = [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "python -m pytest" in b]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == command


def test_readme_mount_example_runs(tmp_path: Path) -> None:
    from _fusemount import WHY
    if WHY is not None:
        pytest.skip(WHY)
    import daxfs
    text = README.read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "daxfs mount " in b]
    pool, mnt = str(tmp_path / "data.pool"), str(tmp_path / "mnt")
    daxfs.mkfs(pool, 64 << 20).close()
    script = (f'daxfs() {{ "{sys.executable}" -m daxfs "$@"; }}\npython() {{ "{sys.executable}" "$@"; }}\n'
              "set -eo pipefail\n" + block.replace("/dev/shm/data.pool", pool).replace("/mnt/data", mnt))
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-uz", mnt])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "['copy.txt', 'hello.txt']" in done.stdout or "['hello.txt', 'copy.txt']" in done.stdout
    assert not os.path.ismount(mnt)
    with daxfs.open_volume(pool) as vol:              # umount waited for the daemon to let go
        assert vol.fsck() == [] and vol.open("/copy.txt").read() == b"hello\n"
