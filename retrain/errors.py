"""The one exception family the library raises; the CLI maps it to an exit code and one line."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a library's often goes on with a traceback or a hint), or its
    type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RetrainError(Exception):
    """Base class: the message is one line naming the bad value and the fix."""

    exit_code = 1
    notified: bool = False  # set once the cycle's failure has been sent to the notification sinks


class ConfigError(RetrainError):
    """Invalid settings: unknown key, bad value."""

    exit_code = 2


class DataError(RetrainError):
    """Missing, unreadable or invalid data, or an empty window."""

    exit_code = 3


class RegistryError(RetrainError):
    """A registry precondition failed: no candidate, unknown version, alias moved."""

    exit_code = 4


class Refused(RegistryError):
    """A move of production was refused on its merits (stale comparison, rolled-back version, lost race).

    The loop records a refused promotion as outcome "kept" with this reason instead of failing.
    """


class CheckError(RetrainError):
    """A pre-promotion check failed."""

    exit_code = 5


class NotifyError(RetrainError):
    """The notification sink cannot be written."""

    exit_code = 6


class ServiceError(RetrainError):
    """A service the loop talks to is unreachable: the tracking server, its database, the artifact store (S3).

    Nothing was moved; running the same command again once the service is back is safe.
    """

    exit_code = 7


class TrainingError(RetrainError):
    """Training ran but learned nothing usable: no candidate is registered."""

    exit_code = 8


class CredentialsRefused(ServiceError):
    """A service refused who we are (HTTP 401/403, a database refusing the password): fix the credentials, not
    the service. Nothing was moved."""

    exit_code = 4
