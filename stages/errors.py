"""Errors the CLI turns into one line on stderr and exit code 1."""


class StageError(Exception):
    """A data or runtime problem: bad input file, inconsistent data, failed load."""


class ParamError(StageError):
    """A bad value in params.yaml (unknown/missing key, out-of-range value)."""
