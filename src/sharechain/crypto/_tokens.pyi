from _typeshed import ReadableBuffer as Buffer

def hex_tokens(
    key: Buffer, algorithm: str, offsets: Buffer, data: Buffer, wide: bool, /
) -> bytes: ...
