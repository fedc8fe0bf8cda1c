"""The errors this library raises: each names what is wrong, so callers can show the message as it is."""


class CancerModelsError(Exception):
    """Something a user can fix: the message says what. The command line prints it and exits with status 2."""


class ConfigError(CancerModelsError, ValueError):
    """A model or training config is missing, malformed or describes something we cannot build."""


class CheckpointError(CancerModelsError, RuntimeError):
    """A checkpoint is missing, unreachable or does not fit its architecture."""


class ImageError(CancerModelsError, ValueError):
    """The input is not an image we can classify."""


class DataError(CancerModelsError, ValueError):
    """A data source, column or label that training cannot use."""
