"""SecAgg+ between parties: exact sums, dropouts and threshold, and the aggregator's view."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from raypipe.errors import RaypipeError
from raypipe.federated.privacy import SecAggClient, SecAggConfig, SecAggServer, secure_sum
from raypipe.federated.privacy.secagg import (
    EncryptedShare,
    KeyAdvert,
    MaskedInput,
    UnmaskReply,
    plan_round,
    quantize,
)
from raypipe.federated.privacy.shamir import reconstruct, share, share_many
from raypipe.federated.secure_clients import SecAggHost, step_payload_for
from raypipe.federated.secure_rounds import run_protocol


def test_shamir_rebuilds_from_any_threshold_shares_and_not_from_fewer():
    secret = bytes(range(32))
    shares = share(secret, range(7), 3)
    for chosen in ([0, 1, 2], [6, 3, 1], [2, 4, 5, 6]):
        assert reconstruct({h: shares[h] for h in chosen}, 3) == secret
    # degree 2: interpolating two shares as if the degree were 1 misses the secret
    wrong = reconstruct({h: shares[h] for h in (0, 1)}, 2, length=66)
    assert wrong[-32:] != secret
    with pytest.raises(RaypipeError, match="needs 3 shares"):
        reconstruct({0: shares[0], 1: shares[1]}, 3)


def test_shamir_shares_several_secrets_each_with_its_own_polynomial():
    seed, key = bytes(range(32)), bytes(range(100, 132))
    shares = share_many([seed, key], [4, 9, 17, 20], 3)
    assert set(shares) == {4, 9, 17, 20}
    for chosen in ([4, 9, 17], [20, 17, 4]):
        assert reconstruct({h: shares[h][0] for h in chosen}, 3) == seed
        assert reconstruct({h: shares[h][1] for h in chosen}, 3) == key
    # fresh coefficients per secret: equal secrets still get different shares
    twin = share_many([seed, seed], [4, 9], 3)
    assert twin[4][0] != twin[4][1]


@settings(max_examples=10, deadline=None)
@given(k=st.integers(2, 10), p=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_secure_sum_equals_plain_sum_within_quantization_error(k, p, seed):
    vectors = np.random.default_rng(seed).uniform(-8, 8, size=(k, p))
    config = SecAggConfig()
    result = secure_sum(vectors, config)
    step = 2 * config.clipping_range / config.quantization_range
    assert np.all(np.abs(result.total - vectors.sum(axis=0)) <= k * step + 1e-9)


@settings(max_examples=10, deadline=None)
@given(k=st.integers(4, 10), seed=st.integers(0, 10_000), data=st.data())
def test_clients_dropping_after_masking_are_left_out_and_the_rest_unmasked(k, seed, data):
    dropped = data.draw(st.lists(st.integers(0, k - 1), max_size=k - 2, unique=True))
    vectors = np.random.default_rng(seed).normal(size=(k, 5))
    config = SecAggConfig(num_shares=4, reconstruction_threshold=2)
    kept = [i for i in range(k) if i not in dropped]
    # each client's secrets are shared with itself and its ring neighbours i-2..i+2
    holders = [{(i + d) % k for d in range(-2, 3)} for i in range(k)] if k > 5 else None
    if holders is None:
        holders = [set(range(k))] * k
    if len(kept) < 2 or any(len(holders[i] & set(kept)) < 2 for i in range(k)):
        with pytest.raises(RaypipeError, match="reconstruction_threshold"):
            secure_sum(vectors, config, dropped_after_masking=dropped)
        return
    result = secure_sum(vectors, config, dropped_after_masking=dropped)
    assert result.included == tuple(kept)
    assert result.dropped == tuple(sorted(dropped))
    step = 2 * config.clipping_range / config.quantization_range
    np.testing.assert_allclose(result.total, vectors[kept].sum(axis=0), atol=k * step)


def test_too_many_dropouts_is_a_clear_error():
    with pytest.raises(RaypipeError, match="reconstruction_threshold"):
        secure_sum(
            np.zeros((6, 3)),
            SecAggConfig(num_shares=2, reconstruction_threshold=2),
            dropped_after_masking=[1, 3, 5],
        )


def _run_round(vectors, config, drop_after_sharing=(), drop_before_sharing=()):
    ids = [10 * i + 3 for i in range(len(vectors))]  # ids are not positions
    setup = plan_round(1, ids, vectors.shape[1], config)
    server = SecAggServer(setup)
    clients = {c: SecAggClient(c, vectors[i]) for i, c in enumerate(ids)}
    routed = server.collect_adverts([c.advertise() for c in clients.values()])
    sharing = [c for c in ids if c not in drop_before_sharing]
    inbox = server.collect_shares(
        [m for c in sharing for m in clients[c].share_keys(setup, routed[c])]
    )
    uploading = [c for c in sharing if c not in drop_after_sharing]
    survivors, dropped = server.collect_masked(
        [clients[c].masked_input(inbox.get(c, [])) for c in uploading]
    )
    result = server.collect_unmask([clients[c].unmask(survivors, dropped) for c in survivors])
    return ids, server, clients, result


def test_the_aggregator_sees_masked_uploads_and_the_shares_it_is_owed_nothing_else():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(8, 6))
    config = SecAggConfig(num_shares=4, reconstruction_threshold=3)
    ids, server, clients, result = _run_round(
        vectors, config, drop_after_sharing=(ids_drop := (23,)), drop_before_sharing=(53,)
    )
    kept = [i for i, c in enumerate(ids) if c not in (23, 53)]
    np.testing.assert_allclose(result.total, vectors[kept].sum(axis=0), atol=1e-4)
    assert result.dropped == ids_drop and 53 not in result.included

    # the view holds only these message types, each from the party it claims
    kinds = {type(m) for m in server.view}
    assert kinds == {KeyAdvert, EncryptedShare, MaskedInput, UnmaskReply}
    unmask = [m for m in server.view if isinstance(m, UnmaskReply)]
    survivors = set(result.included)
    for reply in unmask:  # b-shares of surviving neighbours, key shares of dropped ones only
        neighbours = set(server.setup.neighbours[reply.client]) | {reply.client}
        assert set(reply.seed_shares) <= survivors & neighbours
        assert set(reply.key_shares) <= set(ids_drop) & neighbours
        assert not set(reply.seed_shares) & set(reply.key_shares)
    assert sum(len(r.key_shares) for r in unmask) >= 3  # the dropped client's key is rebuilt

    # nothing the aggregator holds contains a client's private material or a plain update
    state = pickle.dumps((server.view, server._adverts, server._uploads))
    for c, client in clients.items():
        assert client._cipher_key.private_bytes_raw() not in state
        if c in survivors:
            assert client._mask_key not in state  # only dropped clients' mask keys are rebuilt
        else:
            assert client._self_seed not in state
    for i in kept:
        plain = quantize(vectors[i], config, np.random.default_rng(0))
        assert plain.tobytes() not in state
    ciphertexts = [m.ciphertext for m in server.view if isinstance(m, EncryptedShare)]
    for c, client in clients.items():
        for j, (seed_share, key_share) in client._held.items():
            if j != c:
                assert all(seed_share not in ct and key_share not in ct for ct in ciphertexts)


def test_a_client_refuses_to_reveal_both_secrets_of_one_neighbour():
    setup = plan_round(1, [0, 1, 2, 3], 3, SecAggConfig(reconstruction_threshold=2))
    client = SecAggClient(0, np.zeros(3))
    client.setup = setup  # as step 2 leaves it
    with pytest.raises(RaypipeError, match="both surviving and dropped"):
        client.unmask([0, 1, 2], [1])
    with pytest.raises(RaypipeError, match="1 survivors"):
        client.unmask([0], [1, 2, 3])


def test_a_single_masked_upload_looks_uniform_whatever_the_input():
    config = SecAggConfig()
    seen = []
    for value in (0.0, 7.5):
        setup = plan_round(1, [0, 1, 2], 20_000, config)
        x = np.full((3, 20_000), value)
        clients = [SecAggClient(c, x[c]) for c in range(3)]
        server = SecAggServer(setup)
        routed = server.collect_adverts([c.advertise() for c in clients])
        inbox = server.collect_shares(
            [m for c in clients for m in c.share_keys(setup, routed[c.client])]
        )
        masked = clients[0].masked_input(inbox[0]).vector
        assert stats.kstest(masked / config.modulus_range, "uniform").pvalue > 1e-3
        seen.append(masked)
    assert stats.ks_2samp(seen[0], seen[1]).pvalue > 1e-3
    assert not np.array_equal(seen[0], seen[1])


def test_each_group_receives_only_the_messages_addressed_to_its_clients():
    vectors = np.random.default_rng(3).normal(size=(12, 4))
    groups = [frozenset(range(0, 12, 2)), frozenset(range(1, 12, 2))]
    hosts = [SecAggHost(), SecAggHost()]
    adverts = [hosts[c % 2].hold(c, vectors[c]) for c in range(12)]
    seen: list[tuple[str, frozenset[int], object]] = []

    def step(name, payload):
        out = {}
        for members, host in zip(groups, hosts, strict=True):
            part = step_payload_for(name, payload, members)
            seen.append((name, members, part))
            out.update(host.step(name, part))
        return out

    config = SecAggConfig(num_shares=4, reconstruction_threshold=3)
    result = run_protocol(step, adverts, 4, config, 0).result
    step_ = 2 * config.clipping_range / config.quantization_range
    assert np.all(np.abs(result.total - vectors.sum(axis=0)) <= 12 * step_)
    for name, members, part in seen:
        if name == "share_keys":  # the neighbours' public keys, for this group's clients only
            assert set(part[1]) == members
        if name == "masked_input":  # the ciphertexts addressed to this group's clients only
            receivers = {m.receiver for messages in part[0].values() for m in messages}
            assert receivers == members


def test_the_shamir_field_is_prime_and_holds_every_32_byte_secret():
    from raypipe.federated.privacy.shamir import PRIME, SHARE_BYTES

    assert PRIME > 2**256 and SHARE_BYTES == 33
    # Miller-Rabin with 40 random bases: a composite passes with probability below 4^-40
    d, r = PRIME - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in np.random.default_rng(0).integers(2, 2**62, size=40):
        x = pow(int(a), d, PRIME)
        if x in (1, PRIME - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, PRIME)
            if x == PRIME - 1:
                break
        else:
            raise AssertionError(f"{PRIME} is composite (witness {a})")
    # no smaller prime above 2^256: base 3 witnesses every odd candidate below it (base 2 does
    # not: 2^256 + 1 is a Fermat number, a base-2 pseudoprime)
    assert all(pow(3, c - 1, c) != 1 for c in range(2**256 + 1, PRIME, 2))
    top = b"\xff" * 32
    assert reconstruct(share(top, range(5), 3), 3) == top
