"""`python -m reproduce <command>`: one subcommand per job; bad input ends in one line on stderr, exit 2."""
import argparse
import json
import sys
import typing

from .errors import UserError
from .models import ModelSpec, describe


def spec_arguments(parser):
    """--key value for every model-spec key; pydantic checks and converts the values (one home for rules)."""
    for name, field in ModelSpec.model_fields.items():
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        choices = [a for arg in typing.get_args(field.annotation) for a in typing.get_args(arg) or [arg]]
        shown = " | ".join(c for c in choices if isinstance(c, str)) or (field.description or "")
        default = "required" if field.is_required() else f"default: {field.default}"
        parser.add_argument(*flags, dest=name, metavar="VALUE", help=f"{shown} ({default})".strip())


def spec_from(args) -> dict:
    return {k: getattr(args, k) for k in ModelSpec.model_fields if getattr(args, k, None) is not None}


def cmd_describe(args):
    info = describe(**spec_from(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:>24}  {shown}")


def build_parser():
    parser = argparse.ArgumentParser(prog="reproduce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("describe", help="parameter count and multiply-adds of one network",
                       description="Build a network from its spec and print parameters and multiply-adds "
                                   "for one 32x32 (CIFAR) or 224x224 (ImageNet) image.")
    spec_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_describe)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
