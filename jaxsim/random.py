"""Named PRNG streams: independent keys for independent purposes.

Every random draw in jaxsim takes a key derived from its caller's key by a *name*
(``stream(key, "mr.noise")``), never by a bare integer that another purpose might
also use. The name is hashed (CRC-32) to the integer passed to
``jax.random.fold_in``, so the same name always gives the same key.

Example:
    >>> k = jax.random.key(0)
    >>> noise, b0 = stream(k, "mr.noise"), stream(k, "mr.b0")
"""

from __future__ import annotations

import zlib

import jax

__all__ = ["stream", "stream_id"]


def stream_id(name: str) -> int:
    """The 31-bit integer that names ``name``'s stream."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stream(key: jax.Array, name: str) -> jax.Array:
    """The key of the stream ``name`` under ``key`` (``fold_in`` of its id)."""
    return jax.random.fold_in(key, stream_id(name))
