"""Passwords never leave the machine: URIs are masked wherever abe writes them down."""

from __future__ import annotations

import re

_PASSWORD_IN_URI = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<tail>@)")


def mask_secrets(text: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user:***@host/db`."""
    return _PASSWORD_IN_URI.sub(r"\g<head>***\g<tail>", text)
