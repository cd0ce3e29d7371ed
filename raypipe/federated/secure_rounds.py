"""The server's side of a secure round: drive SecAgg+ through the client backend, then aggregate.

The clients have trained and hold their contributions (:mod:`raypipe.federated.secure_clients`);
:func:`secure_aggregate` plans the round, passes each step's messages through the backend
(``backend.secagg_step``: one call per client group), and unmasks only the sum. Under DP the sum
of clipped deltas and the count of uploads that arrived go to
:meth:`~raypipe.federated.privacy.dp.DPFixedClipping.release`; otherwise the example-weighted
mean (weights capped at ``secagg_max_weight``) goes to the strategy as one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raypipe.federated.privacy.dp import DPFixedClipping
from raypipe.federated.privacy.secagg import (
    EncryptedShare,
    KeyAdvert,
    MaskedInput,
    SecAggConfig,
    UnmaskReply,
    plan_round,
)
from raypipe.federated.privacy.secagg_server import SecAggResult, SecAggServer
from raypipe.federated.strategies.base import ClientUpdates, Strategy

__all__ = ["SecureRound", "aggregate_sum", "message_bytes", "run_protocol", "secure_aggregate"]

StepFn = Callable[[str, Any], Mapping[int, Any]]


@dataclass(frozen=True)
class SecureRound:
    """The protocol's outcome and its traffic (bytes per participating client, up + down)."""

    result: SecAggResult
    bytes_per_client: float


def message_bytes(messages: Iterable[Any]) -> int:
    """Wire size of protocol messages (payload bytes, ids as 8 bytes each)."""
    return sum(_WIRE_SIZE[type(m)](m) for m in messages)


_WIRE_SIZE: dict[type, Callable[[Any], int]] = {
    EncryptedShare: lambda m: 16 + len(m.nonce) + len(m.ciphertext),
    KeyAdvert: lambda m: 8 + len(m.cipher_public) + len(m.mask_public),
    MaskedInput: lambda m: 8 + int(m.vector.nbytes),
    UnmaskReply: lambda m: (
        8 + sum(8 + len(s) for s in (*m.seed_shares.values(), *m.key_shares.values()))
    ),
}


def run_protocol(
    step: StepFn,
    adverts: Sequence[KeyAdvert],
    size: int,
    config: SecAggConfig,
    round_: int,
    drop_after_sharing: frozenset[int] = frozenset(),
) -> SecureRound:
    """One SecAgg+ round over the clients behind ``step`` that advertised keys with their answer;
    the server sees only messages."""
    setup = plan_round(round_, [a.client for a in adverts], size, config)
    server = SecAggServer(setup)
    routed = server.collect_adverts(adverts)
    shares = step("share_keys", (setup, routed))
    shared = [m for messages in shares.values() for m in messages]
    inbox = server.collect_shares(shared)
    uploads = step("masked_input", (inbox, drop_after_sharing))
    survivors, dropped = server.collect_masked(uploads.values())
    replies = step("unmask", (survivors, dropped))
    result = server.collect_unmask(replies.values())
    sent = [*adverts, *shared, *uploads.values(), *replies.values()]
    received: list[Any] = [a for keys in routed.values() for a in keys.values()]
    received += [m for messages in inbox.values() for m in messages]
    traffic = message_bytes(sent) + message_bytes(received)
    return SecureRound(result, traffic / max(len(setup.participants), 1))


def secure_aggregate(
    step: StepFn,
    strategy: Strategy[np.ndarray, ClientUpdates],
    config: SecAggConfig,
    round_: int,
    weights: np.ndarray,
    answered: ClientUpdates,
    adverts: Sequence[KeyAdvert],
    drop_after_sharing: frozenset[int] = frozenset(),
) -> tuple[np.ndarray, SecureRound]:
    """The next global weights from the clients' masked contributions (``answered`` carries no
    parameters: only who trained, their losses and sizes; ``adverts`` their public keys)."""
    secure = run_protocol(step, adverts, weights.shape[0] + 1, config, round_, drop_after_sharing)
    total, count = secure.result.total, len(secure.result.included)
    return aggregate_sum(strategy, round_, weights, total, count, answered), secure


def aggregate_sum(
    strategy: Strategy[np.ndarray, ClientUpdates],
    round_: int,
    weights: np.ndarray,
    total: np.ndarray,
    count: int,
    answered: ClientUpdates,
) -> np.ndarray:
    """The next global weights from the unmasked (or decrypted) sum of ``count`` contributions.

    Under DP the sum is of clipped deltas (plus a 1 each); else of weighted parameters (plus the
    weights), whose ratio is the mean the strategy receives as one answer.
    """
    if isinstance(strategy, DPFixedClipping):
        return strategy.release(round_, weights, total[:-1], count, answered)
    mean = total[:-1] / total[-1]
    pseudo = ClientUpdates(
        client_ids=answered.client_ids[:1],
        params=mean[None, :],
        num_examples=np.ones(1, np.int64),
        losses=answered.losses[:1],
    )
    return strategy.aggregate(round_, weights, pseudo)
