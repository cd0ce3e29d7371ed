"""The clients' side of secure and homomorphic aggregation inside a client group (a Ray actor
hosts many).

After local training, a :class:`SecAggHost` keeps each client's contribution (never sent in the
clear): under DP the client's own delta clipped to ``clipping_norm`` and a weight of 1, else its
parameters times its capped example weight and that weight; each client draws its round's keys
then, and their public halves go with the training answer. Each later protocol step the server
sends one payload for the whole round; the host hands every client only the messages addressed
to it, and each :class:`~raypipe.federated.privacy.secagg.SecAggClient` keeps its secrets to
itself.
With homomorphic aggregation the contribution is encrypted at once and sent with the answer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from raypipe.federated.privacy.dp import clip_updates
from raypipe.federated.privacy.secagg import KeyAdvert, RoundSetup, SecAggClient

__all__ = ["SECAGG_STEPS", "SecAggHost", "SecureFit", "contribution", "step_payload_for"]

SECAGG_STEPS = ("share_keys", "masked_input", "unmask")  # advertising rides on the fit answer


@dataclass(frozen=True)
class SecureFit:
    """What clients need to prepare their masked contribution."""

    max_weight: float = 1000.0
    clipping_norm: float | None = None  # set under DP: clip before masking, weight 1
    he_public: bytes | None = None  # homomorphic: encrypt under this public CKKS context
    he_slots: int = 2048


def contribution(
    params: np.ndarray, weights: np.ndarray, num_examples: int, secure: SecureFit
) -> np.ndarray:
    """One client's vector for the secure sum (its last entry is its weight)."""
    if secure.clipping_norm is not None:
        clipped, _ = clip_updates(params[None, :] - weights, secure.clipping_norm)
        return np.append(clipped[0], 1.0)
    w = min(num_examples, secure.max_weight) / secure.max_weight
    return np.append(params * w, w)


def step_payload_for(name: str, payload: Any, members: Collection[int]) -> Any:
    """The part of a step's payload that concerns the clients ``members`` (one group's).

    A backend that hosts groups in separate processes sends each only its part: the routed
    keys and the inbox are per receiving client, the rest (the plan, who survived) is public
    and goes to everybody. What a group can read is unchanged -- only messages addressed to its
    clients, which :class:`SecAggHost` would have picked out anyway.
    """
    if name == "share_keys":
        setup, routed = payload
        return setup, {c: routed[c] for c in members if c in routed}
    if name == "masked_input":
        inbox, gone = payload
        return {c: inbox[c] for c in members if c in inbox}, gone
    return payload


class SecAggHost:
    """The clients of one group during a secure round."""

    def __init__(self) -> None:
        self._clients: dict[int, SecAggClient] = {}
        # stochastic rounding's generator: no secret (see SecAggClient), one per host
        self._rounding = np.random.default_rng()

    def hold(self, client: int, vector: np.ndarray) -> KeyAdvert:
        """Keep a trained client's contribution until the protocol asks for it masked; the
        client draws its fresh keys now and advertises their public halves with its answer."""
        self._clients[client] = SecAggClient(client, vector, self._rounding)
        return self._clients[client].advertise()

    def step(self, name: str, payload: Any) -> dict[int, Any]:
        """Run protocol step ``name`` for every hosted client concerned; answers by client."""
        if name == "share_keys":
            setup: RoundSetup
            setup, routed = payload
            # clients the plan left out (e.g. held in an attempt the round retried) drop now
            self._clients = {c: cl for c, cl in self._clients.items() if c in routed}
            return {c: cl.share_keys(setup, routed[c]) for c, cl in self._clients.items()}
        if name == "masked_input":
            inbox, gone = payload
            return {
                c: client.masked_input(inbox.get(c, []))
                for c, client in self._clients.items()
                if c not in gone
            }
        if name == "unmask":
            survivors, dropped = (frozenset(ids) for ids in payload)  # once for all clients
            out = {
                c: self._clients[c].unmask(survivors, dropped)
                for c in survivors
                if c in self._clients
            }
            self._clients = {}  # the round is over: its secrets go
            return out
        raise ValueError(f"unknown secure aggregation step {name!r}; steps: {SECAGG_STEPS}")
