"""The one exception type for bad input: the CLI prints its message and exits non-zero."""


class UsageError(ValueError):
    """Bad input from the user; the message names the problem and the fix."""
