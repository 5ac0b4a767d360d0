"""`python -m tools.docs`: regenerate the documentation's generated pages (tools/docs/pages.py lists them)."""

from __future__ import annotations

import argparse
import sys

from tools.docs.pages import GENERATED, run


def main(argv: list[str] | None = None) -> int:
    names = [g.path.rsplit("/", 1)[-1] for g in GENERATED]
    parser = argparse.ArgumentParser(
        prog="python -m tools.docs",
        description="Regenerate the documentation pages written from the code: the configuration, CLI and alarm "
        "references and the cost chart (the alarm list synthesises the app, ~1 min).",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    parser.add_argument("--only", nargs="+", choices=names, metavar="FILE", help=f"only these: {', '.join(names)}")
    args = parser.parse_args(argv)
    chosen = [g for g in GENERATED if args.only is None or g.path.rsplit("/", 1)[-1] in args.only]
    return run(chosen, check=args.check, out=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
