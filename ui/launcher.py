"""The `uplink-console` entry point: headless commands never load Qt; everything else opens the window."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # the engine process of a packaged (frozen) build starts here
    argv = list(sys.argv[1:] if argv is None else argv)
    from app.cli import HEADLESS_COMMANDS

    if argv and argv[0] == "bench":  # opens the real window offscreen
        from ui.bench import main as bench_main

        return bench_main(argv[1:])
    if argv and (argv[0] in HEADLESS_COMMANDS or argv[0] == "--version"):
        from app.cli import main as cli_main

        return cli_main(argv)
    from ui.application import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
