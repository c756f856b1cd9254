"""The errors that mean bad input rather than a bug (no torch: the command line catches them)."""


class CheckpointError(RuntimeError):
    """A checkpoint or run file that is missing, unreadable, unsafe, does not fit the model, or
    cannot be written."""


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss or gradient."""
