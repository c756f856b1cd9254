"""The errors that mean bad input rather than a bug (no torch: the command line catches them)."""


class CheckpointError(RuntimeError):
    """A checkpoint or run file that is missing, unreadable, unsafe, does not fit the model, or
    cannot be written."""


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss or gradient."""


class OptionName(str):
    """The name of an option (a function's parameter, a config field) inside an :class:`OptionError`."""


class OptionError(ValueError):
    """A bad option value, its message made of text and :class:`OptionName` parts: the library names
    its parameters (``lr must be > 0``) and the command line its flags (``--lr must be > 0``), through
    :meth:`naming`."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts
        super().__init__(self.naming(str))

    def naming(self, name) -> str:
        """The message with every option's name replaced by ``name(option)``."""
        return "".join(name(part) if isinstance(part, OptionName) else part for part in self.parts)


def option_error(option: str, problem: str) -> OptionError:
    """``OptionError`` of the message ``"<option> <problem>"``."""
    return OptionError(OptionName(option), " " + problem)
