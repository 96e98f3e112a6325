"""``python -m daxfs``: the same command line as the ``daxfs`` console script."""

from daxfs.adapters.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
