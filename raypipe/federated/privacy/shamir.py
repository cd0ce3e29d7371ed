"""Shamir secret sharing of 32-byte secrets over the prime field of ``2^256 + 297``.

A secret ``s`` (an X25519 private key or a mask seed, read as an integer below ``2^256``) is the
constant term of a random polynomial of degree ``threshold - 1``; holder ``h`` gets its value at
``x = h + 1``. Any ``threshold`` shares rebuild ``s`` by Lagrange interpolation at 0; fewer reveal
nothing about it. The polynomial's coefficients come from the operating system's entropy.

The field is the smallest prime one that holds every 32-byte secret: a share is 33 bytes (the
Mersenne prime ``2^521 - 1`` took 66, doubling what every neighbour is sent, and the arithmetic
on integers twice as long).
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence

from raypipe.errors import RaypipeError

__all__ = ["PRIME", "SHARE_BYTES", "reconstruct", "share", "share_many"]

PRIME = 2**256 + 297  # the smallest prime above 2^256 (tests check it)
SHARE_BYTES = (PRIME.bit_length() + 7) // 8  # 33


def share(secret: bytes, holders: Iterable[int], threshold: int) -> dict[int, bytes]:
    """Shares ``{holder: f(holder + 1)}`` of ``secret`` (at most 32 bytes)."""
    return {h: shares[0] for h, shares in share_many([secret], holders, threshold).items()}


def share_many(
    secrets_: Sequence[bytes], holders: Iterable[int], threshold: int
) -> dict[int, tuple[bytes, ...]]:
    """Shares of several secrets among the same holders, each with its own random polynomial.

    Python integers: at SecAgg+'s sizes (about 10 holders, threshold 4) they beat the same
    evaluation vectorised in numpy over a 31-bit field in words, whose per-call overhead
    dominates. Horner's rule with one reduction per share: a holder's point is small, so every
    step multiplies a field element by a small integer, exactly (a third faster than summing
    products with the point's powers).
    """
    if any(len(s) > 32 for s in secrets_):
        raise ValueError("Shamir secrets here are at most 32 bytes")
    # highest coefficient first, for Horner's rule; the secret is the constant term
    polys = [[*_random_elements(threshold - 1), int.from_bytes(s, "big")] for s in secrets_]
    out = {}
    for holder in holders:
        x = holder + 1
        row = []
        for coefficients in polys:
            value = 0
            for c in coefficients:
                value = value * x + c
            row.append((value % PRIME).to_bytes(SHARE_BYTES, "big"))
        out[holder] = tuple(row)
    return out


# RFC 9380's rule for a uniform field element from random bytes: the prime's bits and 128 more,
# so reducing them leaves a bias below 2^-128
_ELEMENT_BYTES = (PRIME.bit_length() + 128 + 7) // 8


def _random_elements(count: int) -> list[int]:
    """``count`` uniform elements of the field from one read of the system's entropy."""
    pool = secrets.token_bytes(_ELEMENT_BYTES * count)
    return [
        int.from_bytes(pool[i : i + _ELEMENT_BYTES], "big") % PRIME
        for i in range(0, len(pool), _ELEMENT_BYTES)
    ]


def reconstruct(shares: Mapping[int, bytes], threshold: int, length: int = 32) -> bytes:
    """The secret from at least ``threshold`` shares ``{holder: share}`` (the first are used)."""
    if len(shares) < threshold:
        raise RaypipeError(
            f"Shamir reconstruction needs {threshold} shares, got {len(shares)}",
            hint="lower `reconstruction_threshold` or raise `num_shares`",
        )
    chosen = list(shares.items())[:threshold]
    weights = _lagrange_at_zero(tuple(h + 1 for h, _ in chosen))
    secret = sum(
        int.from_bytes(value, "big") * w for (_, value), w in zip(chosen, weights, strict=True)
    )
    return (secret % PRIME).to_bytes(length, "big")


@functools.lru_cache(maxsize=4096)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange weights at 0 of the points ``xs``: ``prod(-x_j) / prod(x_i - x_j)`` over j != i.

    The points are small, so numerators and denominators are exact integers; over their common
    denominator one modular inversion serves every weight. Cached: the same holder sets recur
    every round while the graph and the survivors do (and within a round on a complete graph).
    """
    nums, dens = [], []
    for xi in xs:
        nums.append(math.prod(-xj for xj in xs if xj != xi))
        dens.append(math.prod(xi - xj for xj in xs if xj != xi))
    common = math.prod(dens)
    inverse = pow(common, -1, PRIME)
    return tuple(n * (common // d) * inverse % PRIME for n, d in zip(nums, dens, strict=True))
