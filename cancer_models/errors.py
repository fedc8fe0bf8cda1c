"""The errors this library raises: each names what is wrong, so callers can show the message as it is."""


class ConfigError(ValueError):
    """A model or training config is missing, malformed or describes something we cannot build."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreachable or does not fit its architecture."""


class ImageError(ValueError):
    """The input is not an image we can classify."""


class DataError(ValueError):
    """A data source, column or label that training cannot use."""
