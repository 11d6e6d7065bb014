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
    """An invalid configuration value (unknown model name, bad patch size, ...)."""
