from typing import Any, Final

MAX_DEPTH: Final[int]

def encode(value: Any, /) -> bytes | None: ...
