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

    try:
        # The window's options (--smoke-test, --url, --topic, --insecure …) go through
        # app.cli.connection_from_args: arguments that are not text and a password inside --url
        # are refused there, and a connection that does not verify the broker prints its warning.
        return run(argv)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a failure while starting: one sentence, the traceback in the log file
        from app.cli import report_internal_error

        return report_internal_error("uplink-console", exc)


if __name__ == "__main__":
    sys.exit(main())
