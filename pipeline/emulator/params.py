"""Request binding the ServiceStack way, and ServiceStack-shaped errors.

ServiceStack fills a request DTO from the query string, form data and JSON body, matching names
case-insensitively; list properties take comma-joined values (``accountIds=a,b``), repeated keys,
or JSV brackets (``[a,b]``, which the ``servicestack`` Python client sends). A value that does not
convert to the property's type fails binding with a 400 ``SerializationException`` that lists the
offending fields; services report bad arguments as 400 ``ArgumentException``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson


class ApiError(Exception):
    """An error response in ServiceStack's ``{"responseStatus": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "responseStatus": {
                    "errorCode": self.error_code,
                    "message": self.message,
                    "errors": self.errors,
                }
            }
        )


def field_error(error_code: str, field: str, message: str) -> dict[str, str]:
    return {"errorCode": error_code, "fieldName": field, "message": message}


def _pascal(name: str) -> str:
    # ServiceStack reports the C# property name.
    return name[:1].upper() + name[1:]


class RequestArgs:
    """A request's parameters, merged from query string and body, looked up case-insensitively.

    Values are kept as lists of raw strings (one per occurrence); typed getters convert them and
    collect binding errors, which :meth:`raise_binding_errors` turns into one 400.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self._values: dict[str, list[str]] = {}
        self._errors: list[dict[str, str]] = []

    # -- filling ------------------------------------------------------------------------------

    def add_query(self, query: str) -> None:
        for key, value in parse_qsl(query, keep_blank_values=True):
            self._values.setdefault(key.lower(), []).append(value)

    def set(self, name: str, value: str) -> None:
        """Set a parameter outright (route path variables win over query and body)."""
        self._values[name.lower()] = [value]

    def add_body(self, body: bytes, content_type: str) -> None:
        """Merge a request body; body values override query values of the same name."""
        if not body.strip():
            return
        content_type = content_type.split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            merged: dict[str, list[str]] = {}
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                merged.setdefault(key.lower(), []).append(value)
            self._values.update(merged)
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(
                400,
                "SerializationException",
                f"Could not deserialize 'application/json' request using {self.operation}",
                [field_error("SerializationException", "", str(exc))],
            ) from exc
        if not isinstance(data, dict):
            raise ApiError(400, "SerializationException", "Request body must be a JSON object")
        for key, value in data.items():
            if value is None:
                continue
            self._values[str(key).lower()] = [_jsonish_to_str(v) for v in _as_list(value)]

    # -- typed access -------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return name.lower() in self._values

    def raw(self, name: str) -> str | None:
        values = self._values.get(name.lower())
        if values is None:
            return None
        # A repeated scalar reaches ServiceStack comma-joined, as NameValueCollection does.
        return ",".join(values)

    def str(self, name: str) -> str | None:
        value = self.raw(name)
        return value if value else None

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            return int(value.strip())
        except ValueError:
            self._bad(name, value)
            return default

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in ("", "true", "1"):
            # ``?simplifiedPaging`` with no value reads as true, like ServiceStack's QueryString
            # binder does for bools.
            return True
        if lowered in ("false", "0"):
            return False
        self._bad(name, value)
        return default

    def list(self, name: str) -> list[str] | None:
        values = self._values.get(name.lower())
        if values is None:
            return None
        out: list[str] = []
        for value in values:
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                value = value[1:-1]
            out.extend(part.strip().strip('"') for part in value.split(",") if part.strip())
        return out

    def enum(self, name: str, choices: Iterable[str]) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            return None
        options = list(choices)
        lowered = value.strip().lower()
        for option in options:
            if option.lower() == lowered:
                return option
        if lowered.isdigit() and int(lowered) < len(options):
            return options[int(lowered)]
        self._bad(name, value)
        return None

    def _bad(self, name: str, value: str) -> None:
        field = _pascal(name)
        self._errors.append(
            field_error(
                "SerializationException", field, f"'{value}' is an Invalid value for '{field}'"
            )
        )

    def raise_binding_errors(self) -> None:
        if self._errors:
            raise ApiError(
                400,
                "SerializationException",
                f"Unable to bind to request '{self.operation}'",
                self._errors,
            )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _jsonish_to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def argument_error(field: str, message: str) -> ApiError:
    """A 400 the way a service's own ``ArgumentException`` comes out."""
    return ApiError(
        400, "ArgumentException", message, [field_error("ArgumentException", field, message)]
    )
