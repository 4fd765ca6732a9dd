"""Errors the CLI turns into one clear line and exit code 2."""


class UsageError(Exception):
    """A user's mistake: unknown choice, impossible combination, missing framework."""

    exit_code = 2


class InvalidValue(UsageError):
    """A value no machine could run (a zero batch, NaN, an unknown precision): in a sweep
    a mistake that stops it before any work, unlike a cell this machine cannot run."""
