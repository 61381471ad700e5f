"""The one exception type for bad input: the CLI prints its message and exits non-zero; and warnings."""

import sys


class UsageError(ValueError):
    """Bad input from the user; the message names the problem and the fix."""


def warn(message: str) -> None:
    """One ``dsas-bench: warning:`` line on stderr."""
    print(f"dsas-bench: warning: {message}", file=sys.stderr)
