"""The cost CLI: `python -m tools.cost_estimate [backlog options | traffic | volumes | sizing]`.

    python -m tools.cost_estimate --photos 20M --instances 1 10          # a saturated endpoint (a backlog)
    python -m tools.cost_estimate traffic --per-day 10k --backfill 20M   # the whole system, the three modes
    python -m tools.cost_estimate volumes                                # $/1,000 photos and worst wait by volume
    python -m tools.cost_estimate scheduled --deadline-days 14           # windows on Spot, targets, backfill
    python -m tools.cost_estimate sizing                                 # the defaults a measurement supports

How the figures are made: docs/cost-model.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from classification.contract import DEFAULT_TAXONOMY_PATH, InvalidTaxonomy, Taxonomy
from classification.image_tokens import DEFAULT_PROFILE, GRID_PINPOINTS
from tools.cost import render, reports
from tools.cost.backlog import DEFAULT_INSTANCE_TYPE, INSTANCE_TYPES, InstanceType, estimate
from tools.cost.inputs import (
    DEFAULT_SAMPLE,
    DEFAULT_SIZE,
    EstimateError,
    PhotoSize,
    SizeMix,
    argument,
    parse_count,
    parse_size,
    positive_float,
    positive_int,
    scan_folder,
)

DOC = reports.DOC
SUBCOMMANDS = reports.COMMANDS


def _backlog_parser() -> argparse.ArgumentParser:
    types = ", ".join(f"{t.name} ${t.usd_per_hour:g}/h ({t.gpu})" for t in INSTANCE_TYPES.values())
    parser = argparse.ArgumentParser(
        prog="python -m tools.cost_estimate",
        description=(
            "Estimate the cost and duration of labelling N photos on a saturated SageMaker endpoint (a backlog). "
            "For the whole system under upload traffic, both endpoint modes and the break-even, see the "
            f"subcommands {', '.join(SUBCOMMANDS)} (python -m tools.cost_estimate traffic --help)."
        ),
        epilog=f"How the figures are made, every assumption and its source: {DOC}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--photos",
        required=True,
        type=argument(parse_count),
        help="how many photos to label (20000000, 20M, 1.5k)",
    )
    parser.add_argument(
        "--instance-type",
        nargs="+",
        default=[DEFAULT_INSTANCE_TYPE],
        metavar="TYPE",
        help=f"one or more SageMaker instance types, or 'all' (default {DEFAULT_INSTANCE_TYPE}). Known: {types}",
    )
    parser.add_argument(
        "--instances", nargs="+", type=argument(positive_int), default=[1], metavar="N", help="instance counts"
    )
    parser.add_argument(
        "--profile",
        nargs="+",
        choices=list(GRID_PINPOINTS),
        default=list(GRID_PINPOINTS),
        help=f"image-token profiles to compare (default: all; the model's own default is {DEFAULT_PROFILE})",
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--size",
        action="append",
        type=argument(parse_size),
        metavar="WxH[:WEIGHT]",
        help=f"a photo size and its share, repeatable (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    sizes.add_argument(
        "--photos-dir", type=Path, help="read the sizes of real photos under this folder (headers only)"
    )
    parser.add_argument(
        "--sample", type=argument(positive_int), default=DEFAULT_SAMPLE, help="photos sampled from --photos-dir"
    )
    parser.add_argument(
        "--max-side",
        type=argument(positive_int),
        default=None,
        help="long side the client shrinks photos to before sending (default: the Lambda's, 1008)",
    )
    parser.add_argument(
        "--taxonomy", type=Path, default=DEFAULT_TAXONOMY_PATH, help="taxonomy file for the prompt"
    )
    parser.add_argument(
        "--price-per-hour", type=argument(positive_float), help="override the $/h of the (single) instance type"
    )
    parser.add_argument(
        "--tokens-per-second",
        type=argument(positive_float),
        help="override the throughput of one instance (measured tokens/s, prompt + answer)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _instance_types(
    names: Sequence[str], price: float | None, tokens_per_second: float | None
) -> list[InstanceType]:
    if list(names) == ["all"]:
        names = list(INSTANCE_TYPES)
    unknown = [name for name in names if name not in INSTANCE_TYPES]
    if (price is not None or tokens_per_second is not None) and len(names) != 1:
        raise EstimateError(
            "--price-per-hour and --tokens-per-second describe one instance type; name exactly one"
        )
    if unknown and (price is None or tokens_per_second is None):
        raise EstimateError(
            f"unknown instance type {', '.join(unknown)}; known: {', '.join(INSTANCE_TYPES)} "
            "(for another type pass both --price-per-hour and --tokens-per-second)"
        )
    chosen = []
    for name in dict.fromkeys(names):
        known = INSTANCE_TYPES.get(name) or InstanceType(name, "?", 0, 0, 0.0, 1.0, "--tokens-per-second")
        if price is not None:
            known = InstanceType(**{**asdict(known), "usd_per_hour": price})
        chosen.append(known)
    return chosen


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Exit 0 with the report on stdout; 2 with the reason on stderr for any input the model cannot use."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if arguments and arguments[0] in SUBCOMMANDS:
        return reports.main(arguments[0], arguments[1:], out, err)
    return _backlog_main(arguments, out, err)


def _backlog_main(argv: list[str], out: TextIO, err: TextIO) -> int:
    from classification.images import MAX_SIDE

    parser = _backlog_parser()
    args = parser.parse_args(argv)
    try:
        instance_types = _instance_types(args.instance_type, args.price_per_hour, args.tokens_per_second)
        taxonomy = Taxonomy.load(args.taxonomy)
        if args.photos_dir is not None:
            sizes = scan_folder(args.photos_dir.expanduser(), sample=args.sample, progress=err)
        elif args.size:
            sizes = SizeMix(tuple(args.size), " + ".join(_describe_size(s, args.size) for s in args.size))
        else:
            sizes = SizeMix((PhotoSize(*DEFAULT_SIZE),), f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]} (default)")
        result = estimate(
            photos=args.photos,
            sizes=sizes,
            taxonomy=taxonomy,
            instance_types=instance_types,
            instance_counts=list(dict.fromkeys(args.instances)),
            profiles=list(dict.fromkeys(args.profile)),
            max_side=args.max_side or MAX_SIDE,
            tokens_per_second=args.tokens_per_second,
        )
    except (EstimateError, InvalidTaxonomy) as error:
        parser.print_usage(err)
        err.write(f"{parser.prog}: error: {error}\n")
        return 2
    out.write((render.render_json(result) if args.json else render.render_table(result)) + "\n")
    return 0


def _describe_size(size: PhotoSize, all_sizes: Sequence[PhotoSize]) -> str:
    if len(all_sizes) == 1:
        return f"{size.width}x{size.height}"
    share = size.weight / sum(s.weight for s in all_sizes)
    return f"{size.width}x{size.height} ({share:.0%})"


if __name__ == "__main__":
    sys.exit(main())
