"""Secure aggregation (SecAgg+, Bell et al. 2020) as a protocol between parties.

Each :class:`SecAggClient` holds only its own secrets: two X25519 key pairs (one to encrypt the
shares it sends, one for its pairwise masks) and a self-mask seed ``b``, all from the operating
system's entropy, fresh every round. The :class:`SecAggServer` (the aggregator) only routes
messages and sums; it never holds a client's private key, the self-mask seed of a client that
dropped, or a single unmasked update. One round, over a ``num_shares``-regular neighbour graph
(everybody when ``num_shares`` reaches the number of clients):

1. ``advertise`` -- each client sends its two public keys, generated when it has trained, with
   its training answer (the keys do not depend on the round's plan, so this costs no message
   of its own).
2. ``share_keys`` -- each client Shamir-shares (threshold ``t``) its mask private key and ``b``
   among its neighbours and itself, and encrypts each neighbour's shares with
   ChaCha20-Poly1305 under the X25519 secret it agrees with that neighbour; the server forwards
   the ciphertexts, which it cannot read.
3. ``masked_input`` -- each client quantises its vector to fixed point in the ring
   ``Z / modulus_range`` and uploads::

       y_i = Q(x_i) + PRG(b_i) + sum_{j~i, i<j} PRG(s_ij) - sum_{j~i, j<i} PRG(s_ij)

   with ``s_ij`` the X25519 agreement of the mask keys and PRG a ChaCha20 keystream.
4. ``unmask`` -- the server names who uploaded (survivors) and who did not (dropped after
   sharing); each survivor returns its shares of ``b_j`` for surviving neighbours and of the mask
   key of dropped neighbours, never both for one client. From ``t`` shares each, the server
   removes the survivors' self masks and the masks survivors still hold towards dropped clients.

What the server learns is what SecAgg+ reveals: the sum, who dropped, the self-mask seeds of
survivors (their pairwise masks still hide their inputs) and the mask keys of clients whose
input never arrived. Fewer than ``t`` surviving holders of a needed secret, or fewer than ``t``
survivors, fail the round with a clear error (SecAgg+ aborts). Quantisation: clip to
``[-clipping_range, clipping_range]``, scale by ``quantization_range / (2 clipping_range)``,
stochastic rounding (unbiased), two's complement in the ring.

Parameters and cost. The graph is a ring where each client neighbours the ``num_shares // 2``
clients on either side (degree ``k = 2 * (num_shares // 2)``; everybody once that reaches
``n - 1``). SecAgg+ (Bell et al.) takes ``k = O(log n)`` with constants set by its security and
correctness parameters and the assumed fractions of corrupt and dropped clients; like Flower's
``SecAggPlusWorkflow``, raypipe takes ``num_shares`` and ``reconstruction_threshold`` as given
rather than deriving them. With ``k`` neighbours and threshold ``t``, the secret the server is
owed for a client rebuilds while ``t`` of its holders (its ``k`` neighbours, and itself while it
survives) answer, and fewer than ``t`` holders colluding with the server learn nothing of it.
Per client and round: two X25519 key generations, ``2 k`` X25519 agreements (one per neighbour
for the share channel, one for the pairwise mask; both are needed -- a dropped client's mask key
is revealed, its channel key must not be), one Shamir pass for both secrets, ``k + 1`` ChaCha20
streams. The agreements and key generations are the floor -- on the measured 2-vCPU AMD EPYC
about 41 us and 46 us each when the machine is quiet, two thirds of a client's time in a
10-neighbour round -- and nothing is cached across rounds: keys, seeds and polynomials are
fresh every round.
Everything else is kept to one library call per pair, or per client: a public key is parsed
once per process (it is public, and each of its ``k`` neighbours reads it), a client's ``k + 1``
streams are read and summed in one numpy pass, a Shamir rebuild takes one modular inversion.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from raypipe.errors import RaypipeError, SpecError
from raypipe.federated.privacy.shamir import SHARE_BYTES, share_many

__all__ = [
    "EncryptedShare",
    "KeyAdvert",
    "MaskedInput",
    "RoundSetup",
    "SecAggClient",
    "SecAggConfig",
    "UnmaskReply",
    "dequantize",
    "pair_seed",
    "plan_round",
    "prg",
    "prg_sum",
    "quantize",
]


@dataclass(frozen=True)
class SecAggConfig:
    """SecAgg+ parameters (Flower's ``SecAggPlusWorkflow`` defaults)."""

    num_shares: int = 100
    reconstruction_threshold: int = 3
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32

    def __post_init__(self) -> None:
        r = self.modulus_range
        if r & (r - 1) or not 2**8 <= r <= 2**62:
            raise SpecError(
                [
                    "`secure_aggregation.modulus_range` must be a power of two in "
                    f"[2^8, 2^62], got {r}"
                ]
            )

    @functools.cached_property
    def ring_mask(self) -> np.uint64:
        return np.uint64(self.modulus_range - 1)


def quantize(x: np.ndarray, config: SecAggConfig, rng: np.random.Generator) -> np.ndarray:
    """Fixed point in the ring: clip, scale, round stochastically (unbiased), two's complement."""
    c = config.clipping_range
    scaled = np.clip(x, -c, c) * (config.quantization_range / (2 * c))
    floor = np.floor(scaled)
    q = (floor + (rng.random(np.shape(x)) < scaled - floor)).astype(np.int64)
    ring: np.ndarray = q.astype(np.uint64) & config.ring_mask
    return ring


def dequantize(total: np.ndarray, config: SecAggConfig) -> np.ndarray:
    """Undo :func:`quantize` for a sum of quantised vectors (read as signed in the ring)."""
    t = (total & config.ring_mask).astype(np.int64)
    signed = np.where(t >= config.modulus_range // 2, t - config.modulus_range, t)
    return signed.astype(np.float64) * (2 * config.clipping_range / config.quantization_range)


# below this many ring elements the keystream comes through the AEAD object, whose set-up is a
# few times cheaper than a ``Cipher``'s; Poly1305's pass over the output makes it dearer above
_AEAD_PRG_ELEMENTS = 4096
_ZERO_NONCE = bytes(12)


def prg(seed: bytes, size: int, config: SecAggConfig) -> np.ndarray:
    """``size`` ring elements from the ChaCha20 keystream of a 32-byte ``seed``.

    The stream is RFC 8439's ChaCha20 under ``seed`` with an all-zero nonce, from block counter 1
    on -- exactly what ChaCha20-Poly1305 encrypts zeros to (its tag is dropped), which is the
    cheaper way to get a short stream; long ones come from the bare cipher at counter 1.
    """
    if size <= _AEAD_PRG_ELEMENTS:
        sealed = ChaCha20Poly1305(seed).encrypt(_ZERO_NONCE, bytes(8 * size), None)
        stream = np.frombuffer(sealed, dtype=np.uint64, count=size)
    else:
        counter_and_nonce = (1).to_bytes(4, "little") + _ZERO_NONCE
        encryptor = Cipher(algorithms.ChaCha20(seed, counter_and_nonce), mode=None).encryptor()
        stream = np.frombuffer(encryptor.update(bytes(8 * size)), dtype=np.uint64)
    return stream & config.ring_mask


def prg_sum(
    added: Sequence[bytes], taken: Sequence[bytes], size: int, config: SecAggConfig
) -> np.ndarray:
    """``sum PRG(added) - sum PRG(taken)`` in the ring: one mask total per client (or server).

    The same streams as :func:`prg`. Short streams are sealed by the AEAD one after another and
    read with one ``frombuffer``: each sealed stream is ``8 size`` bytes and a 16-byte tag, i.e.
    ``size + 2`` words of which the last two are dropped -- per stream that saves the numpy calls
    that cost more than the ChaCha20 itself at a model's size.
    """
    seeds = [*added, *taken]
    if not seeds:
        return np.zeros(size, dtype=np.uint64)
    if size > _AEAD_PRG_ELEMENTS:  # long streams: per-stream overhead is noise, memory is not
        total = np.zeros(size, dtype=np.uint64)
        for i, seed in enumerate(seeds):
            stream = prg(seed, size, config)
            total = total + stream if i < len(added) else total - stream
        return total & config.ring_mask
    zeros = bytes(8 * size)
    sealed = b"".join([ChaCha20Poly1305(s).encrypt(_ZERO_NONCE, zeros, None) for s in seeds])
    streams = np.frombuffer(sealed, dtype=np.uint64).reshape(len(seeds), size + 2)[:, :size]
    # uint64 wraps modulo 2^64, a multiple of the ring's modulus: reduce once at the end
    plus = streams[: len(added)].sum(axis=0, dtype=np.uint64)
    minus = streams[len(added) :].sum(axis=0, dtype=np.uint64)
    return np.asarray((plus - minus) & config.ring_mask)


def _kdf(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key from an X25519 shared secret, separated by ``purpose``.

    BLAKE2b with a personalisation string (as libsodium's ``crypto_kx`` derives its session keys
    from X25519): one C call, where ``HKDF`` builds two HMAC objects per derivation -- a round
    derives two keys per neighbour and client, so this was a fifth of a client's time.
    """
    return hashlib.blake2b(secret, digest_size=32, person=b"raypipe-sa/" + purpose).digest()


@functools.lru_cache(maxsize=8192)
def _public_key(raw: bytes) -> X25519PublicKey:
    """A parsed public key, shared by the clients a process hosts.

    Public keys are public: every neighbour of a client parses the same two, so one parse per
    process instead of one per neighbour saves a tenth of a client's time. The cache outlives
    the round harmlessly and is bounded (keys are fresh each round, old ones fall out).
    """
    return X25519PublicKey.from_public_bytes(raw)


def pair_seed(private: bytes | X25519PrivateKey, public: bytes) -> bytes:
    """The pairwise mask seed of an X25519 private key and the other side's public key."""
    key = X25519PrivateKey.from_private_bytes(private) if isinstance(private, bytes) else private
    return _kdf(key.exchange(_public_key(public)), b"mask")


@dataclass(frozen=True)
class RoundSetup:
    """What the server tells every participant before a round: who takes part, the graph, ``t``."""

    round: int
    participants: tuple[int, ...]
    neighbours: Mapping[int, tuple[int, ...]]
    threshold: int
    size: int
    config: SecAggConfig


def plan_round(
    round_: int, participants: Sequence[int], size: int, config: SecAggConfig
) -> RoundSetup:
    """The server's plan: a ``num_shares``-regular ring graph over the sorted participants."""
    ids = sorted(int(c) for c in participants)
    k = len(ids)
    if (k + 1) * config.quantization_range > config.modulus_range:
        raise SpecError(
            [
                f"{k} clients x quantization_range {config.quantization_range} overflow "
                f"modulus_range {config.modulus_range}"
            ],
        )
    if config.num_shares >= k - 1:
        graph = {c: tuple(j for j in ids if j != c) for c in ids}
    else:
        half = max(1, config.num_shares // 2)
        graph = {
            ids[i]: tuple(sorted({ids[(i + d) % k] for d in range(-half, half + 1)} - {ids[i]}))
            for i in range(k)
        }
    # Flower clamps num_shares to the number of clients; the threshold follows it down
    threshold = min(config.reconstruction_threshold, config.num_shares, k)
    return RoundSetup(round_, tuple(ids), graph, threshold, size, config)


# The messages are named tuples: a round sends about ten per client, and a tuple is one object
# to pickle and to track for the garbage collector where a dataclass is two (it and its dict).
class KeyAdvert(NamedTuple):
    client: int
    cipher_public: bytes
    mask_public: bytes


class EncryptedShare(NamedTuple):
    sender: int
    receiver: int
    nonce: bytes
    ciphertext: bytes


class MaskedInput(NamedTuple):
    client: int
    vector: np.ndarray  # uint64 ring elements


class UnmaskReply(NamedTuple):
    """A survivor's shares: of ``b_j`` for surviving neighbours, of mask keys of dropped ones."""

    client: int
    seed_shares: Mapping[int, bytes]
    key_shares: Mapping[int, bytes]


def _aad(sender: int, receiver: int, round_: int) -> bytes:
    return b"%d>%d@%d" % (sender, receiver, round_)


@dataclass
class SecAggClient:
    """One client's side of a round. Its secrets never leave it except as encrypted shares.

    Parameters
    ----------
    client
        The client's id.
    vector
        What it contributes to the sum (e.g. its clipped delta and a weight of 1).
    rounding
        The generator of the stochastic rounding (default: a fresh one). It is no secret of the
        protocol -- it only keeps the rounding unbiased -- so a host may share one among its
        clients (a fresh generator costs as much as a key agreement).
    """

    client: int
    vector: np.ndarray
    rounding: np.random.Generator | None = field(default=None, repr=False)
    setup: RoundSetup = field(init=False, repr=False)  # the server's plan, from step 2 on
    _cipher_key: X25519PrivateKey = field(init=False, repr=False)
    _mask_private: X25519PrivateKey = field(init=False, repr=False)
    _mask_key: bytes = field(init=False, repr=False)
    _self_seed: bytes = field(init=False, repr=False)
    _adverts: dict[int, KeyAdvert] = field(init=False, repr=False, default_factory=dict)
    _held: dict[int, tuple[bytes, bytes]] = field(init=False, repr=False, default_factory=dict)
    _channels: dict[int, ChaCha20Poly1305] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._cipher_key = X25519PrivateKey.generate()
        self._mask_private = X25519PrivateKey.generate()
        self._mask_key = self._mask_private.private_bytes_raw()
        self._self_seed = os.urandom(32)

    @property
    def neighbours(self) -> tuple[int, ...]:
        return tuple(self.setup.neighbours[self.client])

    def advertise(self) -> KeyAdvert:
        """Step 1: the two public keys."""
        mask_public = self._mask_private.public_key()
        return KeyAdvert(
            self.client,
            self._cipher_key.public_key().public_bytes_raw(),
            mask_public.public_bytes_raw(),
        )

    def _channel(self, other: int) -> ChaCha20Poly1305:
        """The authenticated channel to ``other`` (one key agreement, both directions)."""
        if other not in self._channels:
            public = _public_key(self._adverts[other].cipher_public)
            key = _kdf(self._cipher_key.exchange(public), b"share")
            self._channels[other] = ChaCha20Poly1305(key)
        return self._channels[other]

    def share_keys(
        self, setup: RoundSetup, adverts: Mapping[int, KeyAdvert]
    ) -> list[EncryptedShare]:
        """Step 2: the server's plan and the neighbours' public keys in; Shamir shares of the mask
        key and ``b`` out, one ciphertext per neighbour."""
        self.setup = setup
        present = [j for j in self.neighbours if j in adverts]
        if len(present) + 1 < self.setup.threshold:
            raise RaypipeError(
                f"secure aggregation: client {self.client} has {len(present)} neighbours left, "
                f"threshold is {self.setup.threshold}",
                hint="lower `reconstruction_threshold` or raise `num_shares`",
            )
        self._adverts = {j: adverts[j] for j in self.neighbours if j in adverts}
        holders = [*self._adverts, self.client]
        t = self.setup.threshold
        shares = share_many([self._self_seed, self._mask_key], holders, t)
        own_seed_share, own_key_share = shares[self.client]
        self._held[self.client] = (own_seed_share, own_key_share)
        out = []
        nonces = os.urandom(12 * len(self._adverts))  # one system call for all of them
        for i, j in enumerate(self._adverts):
            nonce = nonces[12 * i : 12 * i + 12]
            plain = b"".join(shares[j])
            sealed = self._channel(j).encrypt(nonce, plain, _aad(self.client, j, self.setup.round))
            out.append(EncryptedShare(self.client, j, nonce, sealed))
        return out

    def masked_input(self, inbox: Sequence[EncryptedShare]) -> MaskedInput:
        """Step 3: keep the shares addressed here, upload the masked vector."""
        for message in inbox:
            if message.receiver != self.client or message.sender not in self._adverts:
                continue  # not for this client, or from a non-neighbour: ignore
            plain = self._channel(message.sender).decrypt(
                message.nonce,
                message.ciphertext,
                _aad(message.sender, self.client, self.setup.round),
            )
            self._held[message.sender] = (plain[:SHARE_BYTES], plain[SHARE_BYTES:])
        config, size = self.setup.config, self.setup.size
        # neighbours whose shares arrived: the ones the server can unmask if they drop
        seeds = {
            j: pair_seed(self._mask_private, self._adverts[j].mask_public)
            for j in self._held
            if j != self.client
        }
        added = [self._self_seed, *(s for j, s in seeds.items() if self.client < j)]
        taken = [s for j, s in seeds.items() if self.client > j]
        rounding = self.rounding if self.rounding is not None else np.random.default_rng()
        y = quantize(self.vector, config, rounding) + prg_sum(added, taken, size, config)
        return MaskedInput(self.client, y & config.ring_mask)

    def unmask(self, survivors: Collection[int], dropped: Collection[int]) -> UnmaskReply:
        """Step 4: shares owed to the server; refuses a request that would unmask anyone.

        Pass frozensets when many clients answer the same request: the work per client is then
        its ``k + 1`` held shares, not the round's number of clients.
        """
        survivors, dropped = frozenset(survivors), frozenset(dropped)  # no copy of a frozenset
        both = survivors & dropped
        if both or len(survivors) < self.setup.threshold:
            raise RaypipeError(
                f"secure aggregation: client {self.client} refuses to unmask: "
                + (
                    f"clients {sorted(both)} named both surviving and dropped"
                    if both
                    else f"{len(survivors)} survivors, threshold {self.setup.threshold}"
                ),
                hint="the aggregator broke the protocol; retry the round",
            )
        return UnmaskReply(
            self.client,
            seed_shares={j: held[0] for j, held in self._held.items() if j in survivors},
            key_shares={j: held[1] for j, held in self._held.items() if j in dropped},
        )
