"""The client's small exception tree. Messages name what to fix and never carry secrets."""

from __future__ import annotations


class EvoVoiceError(Exception):
    """Base class of every error raised by the Evo Voice client."""


class ConfigError(EvoVoiceError):
    """A setting is missing or malformed; the message names the environment variable."""


class AuthError(EvoVoiceError):
    """Login failed or the server keeps answering 401 after fresh logins."""


class RequestFailed(EvoVoiceError):
    """A request still failed after the retry budget was spent (5xx, 429, network)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(RequestFailed):
    """The server kept answering 429 until the retry budget was spent."""


class ServerError(RequestFailed):
    """The server kept answering 5xx until the retry budget was spent."""


class ClientError(EvoVoiceError):
    """A 4xx other than 401/408/429: the request itself is wrong (bad parameter, forbidden)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadResponse(EvoVoiceError):
    """A 200 whose body is not the expected JSON (HTML page, truncated JSON, wrong shape)."""
