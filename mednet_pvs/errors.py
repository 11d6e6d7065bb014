"""Errors that reach users. The CLI prints ``str(err)`` as one line, without a traceback.

Every error about an input names the file and the problem, so a user with a hundred scans knows
which one to fix and how.
"""
from __future__ import annotations

from os import PathLike


class MednetError(Exception):
    """Base class of the errors this package raises on purpose (bad input, bad config, ...)."""


class InputError(MednetError, ValueError):
    """A file (image, label, manifest, checkpoint...) that cannot be used: says which and why.

    Args:
        path: the offending file (or a description such as ``"<array>"``).
        problem: what is wrong with it and, where possible, what to do.
    """

    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ConfigError(MednetError, ValueError):
    """An invalid configuration value (unknown model name, bad patch size, ...).

    Args:
        problem: what is wrong; with ``field``, usually what the value must be (``"must be >= 1,
            not 0"``).
        field: where the value sits, dotted from the outermost config
            (``"inference.window.batch_size"``); ``None`` when the message says it all.
        sep: what joins ``field`` and ``problem`` in the message: ``" "`` for a predicate
            (``"batch_size must be >= 1, not 0"``), ``": "`` for a message of its own.
    """

    def __init__(self, problem: str, *, field: str | None = None, sep: str = " ") -> None:
        self.problem = problem
        self.field = field
        self.sep = sep
        super().__init__(problem if field is None else f"{field}{sep}{problem}")

    def within(self, name: str) -> ConfigError:
        """The same error seen from the config one level up, which holds it under ``name``."""
        if self.field is None:
            return ConfigError(self.problem, field=name, sep=": ")
        return ConfigError(self.problem, field=f"{name}.{self.field}", sep=self.sep)
