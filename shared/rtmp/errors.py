"""The one exception type the RTMP, AMF0 and FLV cores raise for malformed or unacceptable input."""

from __future__ import annotations


class ProtocolError(ValueError):
    """The peer sent something we cannot or will not parse; the connection should be closed.

    A shell catches this one type, counts it and closes. Parsers never let IndexError, struct.error or
    UnicodeDecodeError escape: they convert them into a ProtocolError with a message naming the field.
    """
