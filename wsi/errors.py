"""The base error type of the project.

Every mistake a user can make with an input (a missing slide, a malformed XML, a config with a wrong key)
raises a subclass of :class:`WSIError` whose message is one line naming the file and what is wrong. The
command-line scripts print that line and exit with status 2, without a traceback.
"""


class WSIError(Exception):
    """Base class of the errors this project raises for bad input."""


class InputError(WSIError, ValueError):
    """A file or argument given by the user is malformed; the message names it and says why."""
