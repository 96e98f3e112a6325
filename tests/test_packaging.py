"""What a user gets from ``pip install daxfs``: the metadata, the license, and an import that
costs only what it needs."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import daxfs


def test_metadata_says_what_daxfs_is_and_needs() -> None:
    meta = metadata.metadata("daxfs")
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.11"
    classifiers = meta.get_all("Classifier") or []
    for wanted in ("Operating System :: POSIX :: Linux", "Typing :: Typed", "Topic :: System :: Filesystems",
                   "Programming Language :: Python :: 3.11"):
        assert wanted in classifiers
    requires = " ".join(metadata.requires("daxfs") or [])
    assert "sortedcontainers" not in requires                  # never imported, so not required
    assert meta["Version"] == daxfs.__version__


def test_license_ships_with_the_package() -> None:
    files = [f for f in metadata.files("daxfs") or [] if f.name == "LICENSE"]
    assert files and "MIT License" in files[0].read_text()


def test_import_daxfs_leaves_numpy_and_pytest_alone() -> None:
    code = ("import sys, daxfs, daxfs.testing; "
            "print(sorted(m for m in ('numpy', 'pytest', 'pyarrow', 'fsspec') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_array_brings_numpy_in_when_asked(tmp_path: object) -> None:
    code = ("import sys, daxfs; from daxfs.media import MemoryPool; "
            "daxfs.Volume.format(pool := MemoryPool(1 << 22)); vol = daxfs.Volume.mount(pool); "
            "f = vol.open('a', 'w+b', buffering=0); f.write(bytes(4096)); "
            "before = 'numpy' in sys.modules; m = f.map(); a = m.array(); "
            "print(before, 'numpy' in sys.modules, a.shape); del a; m.close(); f.close(); vol.close()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "(4096,)"]
