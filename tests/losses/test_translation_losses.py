"""LSGAN, L1 and PatchNCE against float64 NumPy versions of the reference losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.losses import l1_loss, lsgan_loss, patch_nce_loss


def np_patch_nce(q, k, tau):
    """CUT's PatchNCELoss (nce_includes_all_negatives_from_minibatch=False),
    written from its definition: per image, logits = [q_i.k_i, q_i.k_j (j != i),
    -10 on the diagonal] / tau, cross-entropy with class 0, per patch."""
    b, p, _ = q.shape
    out = np.zeros((b, p))
    for n in range(b):
        for i in range(p):
            pos = q[n, i] @ k[n, i]
            neg = q[n] @ k[n].T
            row = neg[i].copy()
            row[i] = -10.0
            logits = np.concatenate([[pos], row]) / tau
            m = logits.max()
            out[n, i] = -(logits[0] - m - np.log(np.exp(logits - m).sum()))
    return out


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_patch_nce_matches_reference(tau):
    rng = np.random.default_rng(0)
    q = unit(rng.normal(size=(2, 5, 4)))
    k = unit(q + 0.3 * rng.normal(size=q.shape))
    got = patch_nce_loss(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                         temperature=tau)  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(got), np_patch_nce(q, k, tau), rtol=1e-4, atol=1e-6
    )


def np_patch_nce_batch(q, k, tau):
    """Batch-wide negatives: every patch of every image, own position masked."""
    b, p, _ = q.shape
    qf, kf = q.reshape(b * p, -1), k.reshape(b * p, -1)
    out = np.empty(b * p)
    for i in range(b * p):
        neg = np.array([qf[i] @ kf[j] if j != i else -10.0 for j in range(b * p)])
        logits = np.concatenate([[qf[i] @ kf[i]], neg]) / tau
        m = logits.max()
        out[i] = -(logits[0] - m - np.log(np.exp(logits - m).sum()))
    return out.reshape(b, p)


def test_patch_nce_batch_negatives():
    rng = np.random.default_rng(3)
    q = unit(rng.normal(size=(3, 4, 5)))
    k = unit(q + 0.3 * rng.normal(size=q.shape))
    qj, kj = jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32)
    got = patch_nce_loss(qj, kj, temperature=0.1, negatives="batch")
    np.testing.assert_allclose(
        np.asarray(got), np_patch_nce_batch(q, k, 0.1), rtol=1e-4, atol=1e-6
    )
    # more negatives: every patch's loss is at least its same-image loss
    same = patch_nce_loss(qj, kj, temperature=0.1)
    assert np.all(np.asarray(got) >= np.asarray(same) - 1e-6)
    # one image per batch: the two settings agree
    np.testing.assert_allclose(
        np.asarray(patch_nce_loss(qj[:1], kj[:1], negatives="batch")),
        np.asarray(patch_nce_loss(qj[:1], kj[:1])),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="negatives"):
        patch_nce_loss(qj, kj, negatives="all")


def test_patch_nce_invariants_and_key_not_differentiated():
    rng = np.random.default_rng(1)
    q = jnp.asarray(unit(rng.normal(size=(1, 6, 8))), jnp.float32)
    # keys equal to the queries of orthogonal patches: low loss; shuffled: higher
    eye = jnp.eye(6, 8)[None]
    low = patch_nce_loss(eye, eye).mean()
    high = patch_nce_loss(eye, jnp.roll(eye, 1, axis=1)).mean()
    assert float(low) < 1e-3 < float(high)
    g = jax.grad(lambda k: patch_nce_loss(q, k).mean())(q)
    assert not np.asarray(g).any()
    gq = jax.grad(lambda x: patch_nce_loss(x, q).mean())(q)
    assert np.abs(np.asarray(gq)).max() > 0
    with pytest.raises(ValueError, match="temperature"):
        patch_nce_loss(q, q, temperature=0.0)
    with pytest.raises(ValueError, match="query and keys"):
        patch_nce_loss(q, q[:, :3])


def test_lsgan_and_l1():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(2, 7, 7, 1))
    np.testing.assert_allclose(lsgan_loss(jnp.asarray(d), True), np.mean((d - 1) ** 2),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(lsgan_loss(jnp.asarray(d), False), np.mean(d**2),
                               rtol=1e-5)  # fmt: skip
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    np.testing.assert_allclose(l1_loss(jnp.asarray(a), jnp.asarray(b)),
                               np.mean(np.abs(a - b)), rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="one shape"):
        l1_loss(jnp.zeros(3), jnp.zeros(4))
