"""Errors that carry a message for the user rather than a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, missing weights): the CLI prints it plainly."""


class StateError(UserError, ValueError):
    """A state that cannot be saved there or loaded: the message names the file or field and what to do."""
