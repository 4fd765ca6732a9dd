"""Errors the CLI turns into one clear line and exit code 2."""


class UsageError(Exception):
    """A user's mistake: unknown choice, impossible combination, missing framework."""

    exit_code = 2
