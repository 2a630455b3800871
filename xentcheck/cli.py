"""The `xentcheck` command line. Every error is one line on stderr and exit status 2; never a traceback."""
from __future__ import annotations

import argparse
import sys


def _cmd_backends(args) -> int:
    from .backends import available_backends

    for name, reason in available_backends().items():
        print(f"{name:<11} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def _cmd_explain(args) -> int:
    from .explain import STAGE9_LOGITS, STAGE9_TARGET, render, worked_example

    logits = STAGE9_LOGITS if args.logits is None else _parse_floats(args.logits, "--logits")
    target = STAGE9_TARGET if args.target is None else args.target
    if args.logits is not None and args.target is None:
        raise UsageError("--target: give the target class index together with --logits")
    try:
        example = worked_example(logits, target)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(render(example))
    return 0


class UsageError(Exception):
    """A bad option or argument: reported in one line, exit status 2."""


def _parse_floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"{option}: expected numbers separated by commas or spaces; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xentcheck", description="Prove softmax and cross-entropy implementations right, value and gradient.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("backends", help="list the built-in backends and whether each is available here")
    p.set_defaults(run=_cmd_backends)
    p = sub.add_parser("explain", help="the Stage 9 worked example, computed exactly")
    p.add_argument("--logits", help="your own logits, comma or space separated")
    p.add_argument("--target", type=int, help="the target class index for --logits")
    p.set_defaults(run=_cmd_explain)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"xentcheck {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xentcheck {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
