"""sharechain.storage: where a node keeps what is not on the chain.

`BlobStore` is the content-addressed store of sealed payloads (see `blobs`).
"""

from sharechain.storage.blobs import BlobDigest, BlobReader, BlobStore, parse_digest

__all__ = ["BlobDigest", "BlobReader", "BlobStore", "parse_digest"]
