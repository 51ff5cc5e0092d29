"""Errors raised by the core for bad input.

The RPC layer maps these to status codes in one table (rpc/errors.py); the CLI prints them.
Each message says what is wrong and, where possible, what to do about it.
"""


class VqpressInputError(ValueError):
    """The input (a file, a config, a tensor) is invalid. Maps to INVALID_ARGUMENT."""


class FormatError(VqpressInputError):
    """A scene or .vqp file cannot be read: truncated, lying header, unsupported encoding."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class LimitExceeded(VqpressInputError):
    """A request asks for more than a budget allows (core/budgets.py). Maps to RESOURCE_EXHAUSTED.

    ``limit`` names the budget, ``maximum`` is its value and ``value`` what was asked for."""

    def __init__(self, limit: str, maximum: int, value: int, message: str) -> None:
        self.limit, self.maximum, self.value = limit, maximum, value
        super().__init__(message)


class ConfigError(VqpressInputError):
    """A configuration value is out of range."""


class NonFiniteError(VqpressInputError):
    """Non-finite values were found and strict mode forbids repairing them."""


class Cancelled(Exception):
    """Raised from a progress callback to stop long work cleanly (the job was cancelled)."""
