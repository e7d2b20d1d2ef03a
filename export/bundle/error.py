"""The one exception type for a bundle that cannot be written or loaded (its own module so the
bundle's reader, authentication and schema check share it without importing each other)."""

from saf.core.errors import SafError


class BundleError(SafError):
    """A bundle that cannot be loaded: the message names the file and what is wrong."""
