"""Errors a user can act on.

Every error raised for bad input is a :class:`LayerwiseError`: its message is one line that names
the problem and the fix. The command line turns it into that line on stderr and exit code 2,
never a traceback.
"""


class LayerwiseError(Exception):
    """Bad input or a state the user can fix; the message says how."""


class UnknownNameError(LayerwiseError, KeyError):
    """A registry name (model, dataset, ...) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(LayerwiseError):
    """A dataset folder or file that is missing or malformed."""


class ShapeMismatchError(LayerwiseError):
    """A model and a dataset whose shapes disagree."""


class TrainingDivergedError(LayerwiseError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ResultsSchemaError(LayerwiseError):
    """A results document that does not follow ``layerwise.results/1``."""


class CheckpointError(LayerwiseError):
    """A checkpoint that is missing, truncated or does not fit the model."""


class ConfigError(LayerwiseError, ValueError):
    """An option with a bad type or value (e.g. ``epochs=2.5``, ``lr=-1``)."""
