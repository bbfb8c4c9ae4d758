"""sharechain: a consortium blockchain for governed data sharing between organisations."""

from sharechain.errors import SharechainError

__all__ = ["SharechainError", "__version__"]
__version__ = "0.1.0"
