"""Every network learns: gradients reach every parameter, and a tiny batch is
overfitted by Adam with the explicit-split jitted train step (the pattern that works
in both NNX graph and tree mode: split params from the rest, differentiate the
params, merge back)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsim.models import DynUNet, SegResNetVAE, UNet

STEPS = 100


def blobs(key, n: int = 2, size: int = 32):
    """``n`` images ``(n, size, size, 1)`` of 3 discs with 2 labels, plus labels."""
    yy, xx = np.mgrid[:size, :size]
    centres = np.asarray(jax.random.uniform(key, (n, 3, 2), minval=8, maxval=size - 8))
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        for j, (cy, cx) in enumerate(centres[i]):
            labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = 1 + j % 2
    noise = 0.3 * np.asarray(
        jax.random.normal(jax.random.fold_in(key, 1), labels.shape)
    )
    image = np.array([0.0, 1.0, -1.0], np.float32)[labels] + noise
    return jnp.asarray(image[..., None], jnp.float32), jnp.asarray(labels)


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def unet_loss(model, x, y):
    logits = model(x)
    seg = cross_entropy(logits, y)
    return seg, {"seg": seg, "accuracy": accuracy(logits, y)}


def dynunet_loss(model, x, y):
    logits, head = model(x)
    # nnU-Net: heads see downsampled targets; weights 2/3, 1/3
    seg = cross_entropy(logits, y)
    loss = (2 * seg + cross_entropy(head, y[:, ::2, ::2])) / 3
    return loss, {"seg": seg, "accuracy": accuracy(logits, y)}


def vae_loss(model, x, y):
    logits, vae = model(x)
    seg = cross_entropy(logits, y)
    return seg + 0.1 * vae, {"seg": seg, "accuracy": accuracy(logits, y)}


CASES = {
    "unet": (
        lambda r: UNet(
            2, 1, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=2, rngs=r
        ),
        unet_loss,
    ),
    "dynunet": (
        lambda r: DynUNet(
            2,
            1,
            3,
            kernel_size=[3, 3, 3],
            strides=[1, 2, 2],
            filters=[8, 16, 16],
            deep_supervision=True,
            rngs=r,
        ),  # fmt: skip
        dynunet_loss,
    ),
    "segresnetvae": (
        lambda r: SegResNetVAE(
            2,
            1,
            3,
            input_image_size=(32, 32),
            blocks_down=(1, 1, 1),
            blocks_up=(1, 1),
            vae_nz=16,
            vae_estimate_std=True,
            rngs=r,
        ),  # fmt: skip
        vae_loss,
    ),
}


def train(model, loss_fn, x, y, steps: int, lr: float = 1e-2):
    """Adam on the ``nnx.Param``s.

    Returns the losses, the per-step aux values (segmentation cross-entropy and
    accuracy of the training-mode logits before the update) and the first step's
    gradients.
    """
    tx = optax.adam(lr)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, rest, opt_state, x, y):
        def objective(params, rest):
            # copy=True: fresh Variables in this trace, so RNG counters and batch
            # statistics can be updated inside the differentiated function
            m = nnx.merge(graphdef, params, rest, copy=True)
            loss, aux = loss_fn(m, x, y)
            return loss, (aux, nnx.split(m, nnx.Param, ...)[2])

        (loss, (aux, rest)), grads = jax.value_and_grad(objective, has_aux=True)(
            params, rest
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss, aux, grads

    losses, auxes, first = [], [], None
    for i in range(steps):
        params, rest, opt_state, loss, aux, grads = step(params, rest, opt_state, x, y)
        if i == 0:
            first = grads
        losses.append(float(loss))
        auxes.append({k: float(v) for k, v in aux.items()})
    nnx.update(model, params, rest)
    return np.array(losses), auxes, first


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request):
    build, loss_fn = CASES[request.param]
    model = build(nnx.Rngs(0))
    x, y = blobs(jax.random.key(0))
    losses, auxes, grads = train(model, loss_fn, x, y, STEPS)
    return request.param, losses, auxes, grads


def test_gradient_reaches_every_parameter(trained):
    name, _, _, grads = trained
    flat = nnx.to_flat_state(grads)
    zero = [
        "/".join(map(str, path)) for path, g in flat if not np.any(np.asarray(g[...]))
    ]
    assert not zero, f"{name}: parameters with all-zero gradient: {zero}"
    assert all(np.all(np.isfinite(np.asarray(g[...]))) for _, g in flat)


def test_overfits_a_tiny_batch(trained):
    name, losses, auxes, _ = trained
    assert np.all(np.isfinite(losses))
    segs = np.array([a["seg"] for a in auxes])
    # the segmentation cross-entropy falls by a large factor ...
    assert segs[-5:].mean() < segs[0] / 20, (name, segs[0], segs[-5:])
    # ... and the model labels the training images almost perfectly
    assert auxes[-1]["accuracy"] > 0.98, (name, auxes[-1])
