"""The aggregator's side of SecAgg+ (see :mod:`raypipe.federated.privacy.secagg`), and a driver
that runs a whole round in one process.

:class:`SecAggServer` routes messages and sums. Everything it receives is appended to
:attr:`SecAggServer.view`, so tests can show that its view is the public keys, ciphertexts it
cannot open, masked uploads and the shares it is owed -- nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raypipe.errors import RaypipeError
from raypipe.federated.privacy.secagg import (
    EncryptedShare,
    KeyAdvert,
    MaskedInput,
    RoundSetup,
    SecAggClient,
    SecAggConfig,
    UnmaskReply,
    dequantize,
    pair_seed,
    plan_round,
    prg_sum,
)
from raypipe.federated.privacy.shamir import reconstruct

__all__ = ["SecAggResult", "SecAggServer", "secure_sum"]


@dataclass(frozen=True)
class SecAggResult:
    """The dequantized sum over the clients whose upload arrived, and who dropped."""

    total: np.ndarray
    included: tuple[int, ...]
    dropped: tuple[int, ...]


@dataclass
class SecAggServer:
    """The aggregator of one round; call the ``collect_*`` steps in order."""

    setup: RoundSetup
    view: list[Any] = field(default_factory=list)
    _adverts: dict[int, KeyAdvert] = field(default_factory=dict)
    _sharers: set[int] = field(default_factory=set)
    _uploads: dict[int, np.ndarray] = field(default_factory=dict)

    def collect_adverts(self, adverts: Iterable[KeyAdvert]) -> dict[int, dict[int, KeyAdvert]]:
        """Step 1: the neighbours' public keys each advertising client receives."""
        for advert in adverts:
            self.view.append(advert)
            self._adverts[advert.client] = advert
        graph = self.setup.neighbours
        return {
            c: {j: self._adverts[j] for j in graph[c] if j in self._adverts} for c in self._adverts
        }

    def collect_shares(self, messages: Iterable[EncryptedShare]) -> dict[int, list[EncryptedShare]]:
        """Step 2: ciphertexts forwarded to their receivers (opaque to the server)."""
        inbox: dict[int, list[EncryptedShare]] = {}
        for message in messages:
            self.view.append(message)
            self._sharers.add(message.sender)
            inbox.setdefault(message.receiver, []).append(message)
        return inbox

    def collect_masked(self, inputs: Iterable[MaskedInput]) -> tuple[list[int], list[int]]:
        """Step 3: the uploads; returns survivors and clients dropped after sharing."""
        for upload in inputs:
            self.view.append(upload)
            if upload.client in self._sharers:
                self._uploads[upload.client] = upload.vector
        survivors = sorted(self._uploads)
        dropped = sorted(self._sharers - set(survivors))
        if len(survivors) < self.setup.threshold:
            raise RaypipeError(
                f"secure aggregation round {self.setup.round}: {len(survivors)} uploads arrived, "
                f"`reconstruction_threshold` is {self.setup.threshold}",
                hint="lower `reconstruction_threshold`, or raise `round_timeout_s` so fewer drop",
            )
        return survivors, dropped

    def collect_unmask(self, replies: Iterable[UnmaskReply]) -> SecAggResult:
        """Step 4: rebuild the owed secrets from ``t`` shares each, unmask the sum."""
        config, size = self.setup.config, self.setup.size
        seed_shares: dict[int, dict[int, bytes]] = {}
        key_shares: dict[int, dict[int, bytes]] = {}
        for reply in replies:
            self.view.append(reply)
            for j, s in reply.seed_shares.items():
                seed_shares.setdefault(j, {})[reply.client] = s
            for j, s in reply.key_shares.items():
                key_shares.setdefault(j, {})[reply.client] = s
        survivors = sorted(self._uploads)
        dropped = sorted(self._sharers - set(survivors))
        # what the uploads carry beyond the inputs: every survivor's self mask, and the pairwise
        # masks survivors hold towards dropped clients (+PRG where the survivor's id is lower)
        added = [self._secret(seed_shares, c, "self-mask seed") for c in survivors]
        taken: list[bytes] = []
        for d in dropped:
            mask_key = self._secret(key_shares, d, "mask key")
            for j in self.setup.neighbours[d]:
                if j in self._uploads:  # j masked towards d (d's shares reached j): remove it
                    seed = pair_seed(mask_key, self._adverts[j].mask_public)
                    (added if j < d else taken).append(seed)
        total = np.zeros(size, dtype=np.uint64)
        for y in self._uploads.values():  # in place: no client-by-parameter matrix
            total += y
        total -= prg_sum(added, taken, size, config)
        return SecAggResult(
            total=dequantize(total, config), included=tuple(survivors), dropped=tuple(dropped)
        )

    def _secret(self, shares: dict[int, dict[int, bytes]], client: int, what: str) -> bytes:
        held = shares.get(client, {})
        if len(held) < self.setup.threshold:
            raise RaypipeError(
                f"secure aggregation cannot rebuild the {what} of client {client}: "
                f"{len(held)} surviving neighbours hold shares, `reconstruction_threshold` is "
                f"{self.setup.threshold}",
                hint="lower `reconstruction_threshold`, raise `num_shares`, or retry the round",
            )
        return reconstruct(held, self.setup.threshold)


def secure_sum(
    vectors: np.ndarray,
    config: SecAggConfig,
    *,
    client_ids: Sequence[int] | None = None,
    dropped_after_masking: Sequence[int] = (),
    round_: int = 0,
) -> SecAggResult:
    """Sum of the rows of ``vectors`` through one SecAgg+ round run in this process.

    ``dropped_after_masking`` are row positions of clients that shared their keys but whose
    masked upload never arrives.
    """
    k, size = vectors.shape
    ids = list(range(k)) if client_ids is None else [int(c) for c in client_ids]
    setup = plan_round(round_, ids, size, config)
    server = SecAggServer(setup)
    rounding = np.random.default_rng()
    clients = {c: SecAggClient(c, vectors[i], rounding) for i, c in enumerate(ids)}
    routed = server.collect_adverts([c.advertise() for c in clients.values()])
    inbox = server.collect_shares(
        [m for c, client in clients.items() for m in client.share_keys(setup, routed[c])]
    )
    gone = {ids[i] for i in dropped_after_masking}
    uploads = [clients[c].masked_input(inbox.get(c, [])) for c in ids if c not in gone]
    survivors, dropped = server.collect_masked(uploads)
    return server.collect_unmask([clients[c].unmask(survivors, dropped) for c in survivors])
