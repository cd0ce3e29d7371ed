"""Secure aggregation, simulated the SecAgg+ way: quantize, mask with pairwise and self masks
modulo ``2^32``, sum, unmask, dequantize.

Every client ``i`` has a Diffie-Hellman key pair (over the prime field ``2^61 - 1``: a toy
group, this is a *simulation* of the protocol's data flow, not a secure implementation) and a
self-mask seed ``b_i``; both secrets are Shamir-shared among its neighbours (SecAgg+'s
``num_shares``-regular graph; everybody when ``num_shares >= clients``). Client ``i`` uploads::

    y_i = Q(x_i) + PRG(b_i) + sum_{j>i, j~i} PRG(s_ij) - sum_{j<i, j~i} PRG(s_ij)   (mod 2^32)

The server sums the uploads, rebuilds ``b_i`` of every uploaded client and the DH key of every
client that dropped after masking (its pairwise masks would not cancel) from at least
``reconstruction_threshold`` shares of surviving neighbours, removes those masks and dequantizes.
Quantization follows Flower: clip to ``[-clipping_range, clipping_range]``, scale to
``[0, quantization_range)``, stochastic rounding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from raypipe.errors import RaypipeError, SpecError

__all__ = [
    "SecAggConfig",
    "SecAggResult",
    "dequantize",
    "masked_upload",
    "quantize",
    "secure_sum",
]

PRIME = 2**61 - 1
GENERATOR = 3


@dataclass(frozen=True)
class SecAggConfig:
    """SecAgg+ parameters (Flower's ``SecAggPlusWorkflow`` defaults)."""

    num_shares: int = 100
    reconstruction_threshold: int = 3
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32


@dataclass(frozen=True)
class SecAggResult:
    """The dequantized sum over the uploaded clients, and who was left out."""

    total: np.ndarray
    included: tuple[int, ...]
    dropped: tuple[int, ...]


def quantize(x: np.ndarray, config: SecAggConfig, rng: np.random.Generator) -> np.ndarray:
    """Clip, scale to ``[0, quantization_range]`` and round stochastically (unbiased)."""
    c = config.clipping_range
    scaled = (np.clip(x, -c, c) + c) * (config.quantization_range / (2 * c))
    floor = np.floor(scaled)
    return (floor + (rng.random(x.shape) < scaled - floor)).astype(np.int64)


def dequantize(total: np.ndarray, count: int, config: SecAggConfig) -> np.ndarray:
    """Undo :func:`quantize` for a sum of ``count`` quantized vectors."""
    c = config.clipping_range
    return total.astype(np.float64) * (2 * c / config.quantization_range) - count * c


def _prg(seed: int, size: int, modulus: int) -> np.ndarray:
    digest = hashlib.sha256(seed.to_bytes(16, "little")).digest()
    rng = np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))
    return rng.integers(0, modulus, size=size, dtype=np.int64)


def _share(
    secret: int, holders: Sequence[int], threshold: int, rng: np.random.Generator
) -> dict[int, int]:
    """Shamir shares ``{holder: f(holder + 1)}`` of ``secret``, polynomial degree ``t - 1``."""
    coefs = [secret] + [int(rng.integers(0, 2**61 - 2)) for _ in range(threshold - 1)]
    out = {}
    for h in holders:
        x, acc = h + 1, 0
        for a in reversed(coefs):
            acc = (acc * x + a) % PRIME
        out[h] = acc
    return out


def _reconstruct(shares: dict[int, int]) -> int:
    """Lagrange interpolation at 0 over the prime field."""
    xs = [h + 1 for h in shares]
    secret = 0
    for (_h, value), xi in zip(shares.items(), xs, strict=False):
        num, den = 1, 1
        for xj in xs:
            if xj != xi:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + value * num * pow(den, PRIME - 2, PRIME)) % PRIME
    return secret


def _neighbours(k: int, num_shares: int) -> list[list[int]]:
    if num_shares >= k - 1:
        return [[j for j in range(k) if j != i] for i in range(k)]
    half = max(1, num_shares // 2)
    return [sorted({(i + d) % k for d in range(-half, half + 1)} - {i}) for i in range(k)]


@dataclass
class _Session:
    """Keys, self-mask seeds and their Shamir shares of one aggregation."""

    graph: list[list[int]]
    public_keys: list[int]
    secret_keys: list[int]
    self_seeds: list[int]
    key_shares: list[dict[int, int]]
    seed_shares: list[dict[int, int]]


def _threshold(k: int, config: SecAggConfig) -> int:
    """Flower clamps ``num_shares`` to the number of clients; the threshold follows it down."""
    return min(config.reconstruction_threshold, min(config.num_shares, k))


def _setup(k: int, config: SecAggConfig, rng: np.random.Generator) -> _Session:
    t = _threshold(k, config)
    graph = _neighbours(k, config.num_shares)
    holders = [sorted([*graph[i], i]) for i in range(k)]  # a client keeps a share itself
    secret_keys = [int(rng.integers(1, PRIME - 1)) for _ in range(k)]
    self_seeds = [int(rng.integers(0, PRIME)) for _ in range(k)]
    return _Session(
        graph=graph,
        public_keys=[pow(GENERATOR, sk, PRIME) for sk in secret_keys],
        secret_keys=secret_keys,
        self_seeds=self_seeds,
        key_shares=[_share(secret_keys[i], holders[i], t, rng) for i in range(k)],
        seed_shares=[_share(self_seeds[i], holders[i], t, rng) for i in range(k)],
    )


def _pair_mask(i: int, j: int, shared: int, size: int, mod: int) -> np.ndarray:
    """What uploader ``i`` adds for neighbour ``j`` given their DH secret ``shared``."""
    m = _prg(shared, size, mod)
    return m if i < j else (mod - m) % mod


def _masked_uploads(
    vectors: np.ndarray, config: SecAggConfig, seed: int
) -> tuple[_Session, list[np.ndarray]]:
    k, size = vectors.shape
    mod = config.modulus_range
    if (k + 1) * config.quantization_range > mod:
        raise SpecError(
            [
                f"{k} clients x quantization_range {config.quantization_range} overflow "
                f"modulus_range {mod}"
            ],
        )
    rng = np.random.default_rng([seed, 0x5EC])
    session = _setup(k, config, rng)
    uploads = []
    for i in range(k):
        y = quantize(vectors[i], config, rng) + _prg(session.self_seeds[i], size, mod)
        for j in session.graph[i]:
            shared = pow(session.public_keys[j], session.secret_keys[i], PRIME)
            y = (y + _pair_mask(i, j, shared, size, mod)) % mod
        uploads.append(y)
    return session, uploads


def masked_upload(
    vectors: np.ndarray, config: SecAggConfig, client: int, seed: int = 0
) -> np.ndarray:
    """The masked vector client ``client`` would upload (what the server sees of it alone)."""
    return _masked_uploads(vectors, config, seed)[1][client]


def secure_sum(
    vectors: np.ndarray,
    config: SecAggConfig,
    *,
    dropped_after_masking: Sequence[int] = (),
    seed: int = 0,
) -> SecAggResult:
    """Sum of the rows of ``vectors`` through the simulated protocol.

    ``dropped_after_masking`` are row positions of clients that took part in key sharing and
    masking but whose masked vector never arrived; they are left out of the sum.
    """
    k, size = vectors.shape
    mod = config.modulus_range
    t = _threshold(k, config)
    session, all_uploads = _masked_uploads(vectors, config, seed)
    dropped = set(dropped_after_masking)
    uploads = {i: y for i, y in enumerate(all_uploads) if i not in dropped}
    total = np.zeros(size, dtype=np.int64)
    for y in uploads.values():
        total = (total + y) % mod
    for i in range(k):
        shares = session.seed_shares[i] if i in uploads else session.key_shares[i]
        alive = {h: s for h, s in shares.items() if h in uploads}
        if len(alive) < t:
            raise RaypipeError(
                f"secure aggregation cannot unmask client {i}: {len(alive)} surviving neighbours "
                f"hold shares, `reconstruction_threshold` is {t}",
                hint="lower `reconstruction_threshold`, raise `num_shares`, or retry the round",
            )
        secret = _reconstruct(dict(list(alive.items())[:t]))
        if i in uploads:
            total = (total - _prg(secret, size, mod)) % mod
        else:  # its neighbours' masks towards i remain in the sum: rebuild and remove them
            for j in session.graph[i]:
                if j in uploads:
                    shared = pow(session.public_keys[j], secret, PRIME)
                    total = (total - _pair_mask(j, i, shared, size, mod)) % mod
    return SecAggResult(
        total=dequantize(total, len(uploads), config),
        included=tuple(sorted(uploads)),
        dropped=tuple(sorted(dropped)),
    )
