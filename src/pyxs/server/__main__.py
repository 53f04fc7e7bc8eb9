"""``python -m pyxs.server --socket PATH [quota options]``: serve in the foreground.

SIGINT or SIGTERM stop it cleanly (the socket file is removed).
"""

from __future__ import annotations

import argparse
import sys

from .options import add_server_arguments, serve, server_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyxs.server", description="An embedded XenStore server."
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    return serve(server_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
