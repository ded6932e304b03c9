"""One error type for every user-facing failure, with a documented exit code."""
from __future__ import annotations

# Exit codes (documented in README, "The CLI", and docs/design.md#code-layout).
EXIT_OK = 0
EXIT_ERROR = 1          # bad input, bad config, failed step: the message says what and how to fix
EXIT_GATE_REJECTED = 2  # the promotion gate said no (a valid, expected outcome)
EXIT_GATE_NO_CHANGE = 3  # the gate found no meaningful difference and the policy does not promote it
EXIT_USAGE = 64         # wrong command-line usage (argparse)


class ModelCIError(Exception):
    """A failure the user can fix. `str(err)` is one line naming the file/field and the fix."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
