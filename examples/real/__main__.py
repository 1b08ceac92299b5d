"""`python -m examples.real fetch [NAME ...]`: get the real fixtures into the cache, verified."""

from __future__ import annotations

import argparse
import sys

from examples.real.fixtures import FIXTURES, FetchError, cache_dir, fetch, is_available


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.real", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download and verify fixtures (default: all)")
    get.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(FIXTURES)}")
    commands.add_parser("status", help="which fixtures are in the cache")
    args = parser.parse_args(argv)
    if args.command == "status":
        for name, fixture in FIXTURES.items():
            print(f"{name}: {'ok' if is_available(name) else 'missing'} ({fixture.file}: {fixture.what})")
        print(f"cache: {cache_dir()}")
        return 0
    try:
        fetch(args.names)
    except (FetchError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
