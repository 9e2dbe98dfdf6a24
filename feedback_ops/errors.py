"""Errors an operator reads: each carries one line that names what is wrong."""

from __future__ import annotations


class OpsError(Exception):
    """A failure whose message is a complete, secret-free, one-line reason."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(OpsError):
    """The configuration (environment or block) is invalid or incomplete."""


class TransientError(OpsError):
    """A failure that is worth retrying: a dropped connection, a throttled request."""


class TimedOut(OpsError, TimeoutError):
    """A step or a call that did not finish within its limit.

    Not retried: the limit is already longer than the step takes when things work, so
    a second attempt would hold the system's lock just as long again.
    """
