"""The one exception type that abe reports to users as a single line."""


class ConfigError(ValueError):
    """Bad user input: the message names the key, the value and what is allowed."""


def first_line(ex: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__
