"""The one exception type that abe reports to users as a single line."""


class ConfigError(ValueError):
    """Bad user input: the message names the key, the value and what is allowed."""
