"""Subcommands of the modelci CLI (each module: register(subparsers))."""
