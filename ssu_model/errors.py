"""Library errors. The CLI reports them as one line and exits 1."""


class DataError(ValueError):
    """Input data is missing, malformed or inconsistent; the message names the problem."""
