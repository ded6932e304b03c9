"""`modelci` command line: one entry point, one subcommand per pipeline step.

Each command module exposes `register(subparsers)` which adds its parser and sets
`func=<callable(args) -> Result>` (a few commands not yet moved onto steps still return an int and
print themselves). This module is the one place that prints a step's result (JSON on stdout), masks
secrets in it and in error messages, and turns the outcome into the exit code: a ModelCIError prints
`modelci <cmd>: error: <one line>` on stderr and exits with its code. Human progress goes to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import NoReturn

from . import __version__, log
from .errors import EXIT_USAGE, ModelCIError
from .steps import Result

# Modules that provide subcommands (each has register(subparsers)). Order = order in --help.
COMMAND_MODULES = [
    "modelci.commands.train",
    "modelci.commands.champion",
    "modelci.commands.gate",
    "modelci.commands.build",
    "modelci.commands.deploy",
    "modelci.commands.registry",
    "modelci.commands.publish",
    "modelci.commands.report",
    "modelci.commands.reproduce",
    "modelci.commands.monitor",
    "modelci.commands.setup",
    "modelci.commands.k8s",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors: one line + exit 64
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modelci", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"modelci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        outcome = args.func(args)
        if isinstance(outcome, Result):  # the one place results are printed and secrets masked
            if outcome.text is not None:
                sys.stdout.write(log.mask(outcome.text))
            else:
                indent = None if outcome.one_line else 2
                print(log.mask(json.dumps(outcome.data, indent=indent, sort_keys=True, default=str)))
            sys.stdout.flush()
            if outcome.error:
                _error(args.command, outcome.error)
            return outcome.exit_code
        return int(outcome or 0)
    except ModelCIError as err:
        _error(args.command, str(err))
        return err.exit_code
    except KeyboardInterrupt:
        print(f"modelci {args.command}: interrupted", file=sys.stderr)
        return 130


def _error(command: str, message: str) -> None:
    print(log.mask(f"modelci {command}: error: {message}"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
