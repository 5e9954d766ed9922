"""The minimal stream interfaces the image and layer code pass around.

Readers and writers here are small duck-typed classes (verifying, prefetching,
decompressing, hashing); these protocols name what each side really needs, so
any of them, or a real binary file, can be handed on.
"""

from __future__ import annotations

from typing import Protocol


class ByteReader(Protocol):
    """``read(n)`` returns at most ``n`` bytes (all that is left when ``n`` < 0); b"" at the end."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class ByteWriter(Protocol):
    """``write(data)`` consumes all of ``data`` and returns its length."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...
