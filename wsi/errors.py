"""The base error type of the project.

Every mistake a user can make with an input (a missing slide, a malformed XML, a config with a wrong key)
raises a subclass of :class:`WSIError` whose message is one line naming the file and what is wrong. The
command-line scripts print that line and exit with status 2, without a traceback.
"""


class WSIError(Exception):
    """Base class of the errors this project raises for bad input."""


class InputError(WSIError, ValueError):
    """A file or argument given by the user is malformed; the message names it and says why."""


class OutputError(WSIError, OSError):
    """An output that cannot be written: ``<path>: cannot write (<reason>)``."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), str(reason)
        super().__init__(f"{path}: cannot write ({reason})")

    def __reduce__(self):  # rebuildable from its fields when it crosses a process boundary
        return type(self), (self.path, self.reason)

    def __str__(self):
        return f"{self.path}: cannot write ({self.reason})"
