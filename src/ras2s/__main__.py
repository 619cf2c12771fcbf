"""``python -m ras2s``: the ``ras2s`` command."""

from ras2s.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="ras2s")
