"""User-facing errors: one line that names what was wrong and how to fix it."""


class AarError(Exception):
    """An error a user can cause; the CLI prints it as one line, never a traceback."""
