"""The README's Python examples run as written (on a scratch pool instead of /dev/shm/data.pool)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import entry_point_installed

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3, "the README lost its Python examples"
    pool = str(tmp_path / "readme.pool")
    code = "\n".join(blocks).replace("/dev/shm/data.pool", pool)
    if not entry_point_installed():
        # A daxfs installed from elsewhere, without the daxfs:// entry point (see conftest).
        code = ("import fsspec\nfsspec.register_implementation('daxfs', "
                "'daxfs.adapters.fsspec_fs.DaxFileSystem')\n" + code)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Owner(" in done.stdout and "weights.bin" in done.stdout
    # the fsspec/Arrow example: 1000 rows read in place, no Arrow memory allocated
    assert "\n1000 0\n" in done.stdout
