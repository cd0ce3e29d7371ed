"""Shamir secret sharing of 32-byte secrets over the prime field of ``2^521 - 1``.

A secret ``s`` (an X25519 private key or a mask seed, read as an integer below ``2^256``) is the
constant term of a random polynomial of degree ``threshold - 1``; holder ``h`` gets its value at
``x = h + 1``. Any ``threshold`` shares rebuild ``s`` by Lagrange interpolation at 0; fewer reveal
nothing about it. The polynomial's coefficients come from the operating system's entropy.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence

from raypipe.errors import RaypipeError

__all__ = ["PRIME", "SHARE_BYTES", "reconstruct", "share", "share_many"]

PRIME = 2**521 - 1  # a Mersenne prime well above any 32-byte secret
SHARE_BYTES = 66  # ceil(521 / 8)


def share(secret: bytes, holders: Iterable[int], threshold: int) -> dict[int, bytes]:
    """Shares ``{holder: f(holder + 1)}`` of ``secret`` (at most 32 bytes)."""
    return {h: shares[0] for h, shares in share_many([secret], holders, threshold).items()}


def share_many(
    secrets_: Sequence[bytes], holders: Iterable[int], threshold: int
) -> dict[int, tuple[bytes, ...]]:
    """Shares of several secrets among the same holders, each with its own random polynomial.

    Horner's rule on Python integers: at SecAgg+'s sizes (about 10 holders, threshold 4) it is
    about twice as fast as the same evaluation vectorised in numpy over a 31-bit field in words,
    whose per-call overhead dominates (measured: 44 us against 105 us per client for two
    secrets).
    """
    if any(len(s) > 32 for s in secrets_):
        raise ValueError("Shamir secrets here are at most 32 bytes")
    polys = [
        [int.from_bytes(s, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
        for s in secrets_
    ]
    out = {}
    for holder in holders:
        x, values = holder + 1, []
        for coefficients in polys:
            acc = 0
            for a in reversed(coefficients):
                acc = (acc * x + a) % PRIME
            values.append(acc.to_bytes(SHARE_BYTES, "big"))
        out[holder] = tuple(values)
    return out


def reconstruct(shares: Mapping[int, bytes], threshold: int, length: int = 32) -> bytes:
    """The secret from at least ``threshold`` shares ``{holder: share}`` (the first are used)."""
    if len(shares) < threshold:
        raise RaypipeError(
            f"Shamir reconstruction needs {threshold} shares, got {len(shares)}",
            hint="lower `reconstruction_threshold` or raise `num_shares`",
        )
    chosen = list(shares.items())[:threshold]
    xs = [h + 1 for h, _ in chosen]
    secret = 0
    for (_, value), xi in zip(chosen, xs, strict=True):
        num, den = 1, 1
        for xj in xs:
            if xj != xi:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + int.from_bytes(value, "big") * num * pow(den, -1, PRIME)) % PRIME
    return secret.to_bytes(length, "big")
