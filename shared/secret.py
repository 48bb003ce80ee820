"""A secret value that cannot leak by accident: its ``repr``, ``str`` and format are redacted.

Wrap a credential as soon as it is read (from an API body, a vault reply) and call ``reveal()`` only
at the one place that needs the value (the RTMP ``publish`` command, the encryption call). A log
line, an f-string, an exception message or a dataclass repr then shows ``Secret('****')``.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

from .urls import mask_secret

REDACTED = "****"


class Secret:
    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    @property
    def hint(self) -> str:
        """At most the last four characters (none for a short secret): what an API may show."""
        return mask_secret(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled: send it through the vault")
