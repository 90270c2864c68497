"""User-facing errors: one clear message, no traceback, a non-zero exit from the CLI."""


class FedrecError(Exception):
    """An error caused by the user's input (file, configuration, command line) or environment."""

    exit_code = 2


class DataError(FedrecError):
    """A ratings file or dataset is missing, corrupt or invalid."""


class ConfigError(FedrecError):
    """A configuration value (file or command line) is invalid."""


class DownloadError(FedrecError):
    """A dataset could not be downloaded or failed its checksum."""
