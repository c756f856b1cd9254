"""The errors that mean bad input rather than a bug (no torch: the command line catches them)."""


class CheckpointError(RuntimeError):
    """A checkpoint or run file that is missing, unreadable, unsafe or does not fit the model."""
