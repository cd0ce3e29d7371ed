"""CKKS aggregation: exact enough, aggregator cannot decrypt, gradient histograms sum too."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tenseal")

from raypipe.errors import RaypipeError, SpecError
from raypipe.federated.privacy.homomorphic import (
    HeAggregator,
    HeConfig,
    HeKeyHolder,
    encrypt,
)


@pytest.fixture(scope="module")
def holder() -> HeKeyHolder:
    return HeKeyHolder()


@pytest.mark.parametrize(("m", "p"), [(3, 5), (100, 22), (20, 5000)])
def test_the_decrypted_sum_is_within_the_documented_bound(holder, m, p):
    x = np.random.default_rng(m).uniform(-8, 8, size=(m, p))
    uploads = [encrypt(holder.public, row, holder.config.slots) for row in x]
    total, count = HeAggregator(holder.public).total(uploads)
    assert count == m and len(total.chunks) == -(-p // holder.config.slots)
    error = np.abs(holder.decrypt(total) - x.sum(axis=0)).max()
    assert error <= 1e-9 * m * (1 + np.abs(x).max())
    assert error > 0  # CKKS is approximate: a zero error would mean nothing was encrypted


def test_the_public_context_cannot_decrypt(holder):
    import tenseal as ts

    context = ts.context_from(holder.public)
    assert not context.is_private()
    upload = encrypt(holder.public, np.arange(4.0), holder.config.slots)
    with pytest.raises(ValueError):
        ts.ckks_vector_from(context, upload.chunks[0]).decrypt()
    # the ciphertext does not carry the plaintext's bytes
    assert np.arange(4.0).tobytes() not in upload.chunks[0]


def test_gradient_histograms_aggregate_like_row_split_xgboost(holder):
    """Per-client (gradient, hessian) sums per feature bin add up to the pooled histogram."""
    rng = np.random.default_rng(0)
    bins, features = 32, 4
    pooled = np.zeros((2, features, bins))
    uploads = []
    for _ in range(10):
        codes = rng.integers(0, bins, size=(200, features))
        p = rng.random(200)
        y = rng.random(200) < 0.5
        grad, hess = p - y, p * (1 - p)
        hist = np.zeros((2, features, bins))
        for f in range(features):
            hist[0, f] = np.bincount(codes[:, f], grad, bins)
            hist[1, f] = np.bincount(codes[:, f], hess, bins)
        pooled += hist
        uploads.append(encrypt(holder.public, hist.ravel(), holder.config.slots))
    total, _ = HeAggregator(holder.public).total(uploads)
    np.testing.assert_allclose(holder.decrypt(total).reshape(pooled.shape), pooled, atol=1e-6)


def test_mismatched_or_missing_uploads_are_clear_errors(holder):
    a = encrypt(holder.public, np.zeros(3), holder.config.slots)
    b = encrypt(holder.public, np.zeros(4), holder.config.slots)
    with pytest.raises(RaypipeError, match="same model shape"):
        HeAggregator(holder.public).total([a, b])
    with pytest.raises(RaypipeError, match="no encrypted upload"):
        HeAggregator(holder.public).total([])
    with pytest.raises(SpecError, match="scale_bits"):
        HeConfig(scale_bits=60)
