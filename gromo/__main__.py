"""``python -m gromo`` / the ``gromo`` console script: ``gromo grow --help`` for the growth command."""

import time

_START = time.perf_counter()


def main(argv=None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from gromo.growth.cli import main as cli_main

    return cli_main(argv, start_time=_START)


if __name__ == "__main__":
    raise SystemExit(main())
