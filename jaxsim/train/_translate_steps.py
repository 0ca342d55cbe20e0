"""Training steps of CUT, FastCUT and CycleGAN as pure functions under ``jit``.

Each step takes the whole training state (parameters of every network, the
optimiser states, image pools) and a PRNG key and returns the new state and the
losses; every random choice of the step (patch positions, pool swaps, FastCUT's
flip) comes from that key, so a run resumed from a checkpoint repeats an
uninterrupted one. The order of updates is the references': CUT updates the
discriminator first and the generator against the updated discriminator;
CycleGAN updates the generators first, then the discriminators on pooled fakes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxsim.losses import l1_loss, lsgan_loss, patch_nce_loss
from jaxsim.models import ImagePool, PatchDiscriminator, PatchSampleMLP, ResnetGenerator

__all__ = ["Networks", "build_networks", "linear_decay_schedule", "make_step"]


def linear_decay_schedule(learning_rate: float, steps: int, decay_steps: int):
    """The references' schedule: constant, then linear decay over ``decay_steps``.

    ``lr(t) = learning_rate * (1 - max(0, t - (steps - decay_steps)) /
    (decay_steps + 1))`` (CycleGAN's ``lambda_rule`` with steps for epochs).
    """
    constant = steps - decay_steps

    def schedule(t):
        return learning_rate * (
            1.0 - jnp.maximum(0, t - constant) / float(decay_steps + 1)
        )

    return schedule


@dataclasses.dataclass(frozen=True)
class Networks:
    """The networks of a method, split into graph definitions and parameters.

    Attributes:
        method: ``"cut"``, ``"fastcut"`` or ``"cyclegan"``.
        graphdefs: ``{name: nnx.GraphDef}``.
        params: ``{name: nnx.State}`` of ``nnx.Param`` values.
        rest: ``{name: nnx.State}`` of everything else (fixed).
    """

    method: str
    graphdefs: dict
    params: dict
    rest: dict

    def module(self, name: str, params=None):
        """The network ``name`` with ``params`` (default: the initial ones)."""
        p = self.params[name] if params is None else params
        return nnx.merge(self.graphdefs[name], p, self.rest[name])


def build_networks(config, *, rngs: nnx.Rngs | None = None) -> Networks:
    """The networks of ``config`` (a :class:`TranslationConfig`), initialised from
    its seed: CUT ``{"G", "D", "F"}``, CycleGAN ``{"G_A", "G_B", "D_A", "D_B"}``
    (``G_A`` translates source to target)."""
    rngs = nnx.Rngs(config.seed) if rngs is None else rngs
    gen = dict(
        ngf=config.ngf,
        n_blocks=config.n_blocks,
        antialias=config.antialias_on,
        init=config.init_used,
    )
    dis = dict(
        ndf=config.ndf,
        n_layers=config.n_layers_d,
        antialias=config.antialias_on,
        init=config.init_used,
    )
    if config.method == "cyclegan":
        nets = {
            "G_A": ResnetGenerator(1, 1, rngs=rngs, **gen),
            "G_B": ResnetGenerator(1, 1, rngs=rngs, **gen),
            "D_A": PatchDiscriminator(1, rngs=rngs, **dis),
            "D_B": PatchDiscriminator(1, rngs=rngs, **dis),
        }
    else:
        g = ResnetGenerator(1, 1, rngs=rngs, **gen)
        channels = g.feature_channels(config.nce_layers_used)
        nets = {
            "G": g,
            "D": PatchDiscriminator(1, rngs=rngs, **dis),
            "F": PatchSampleMLP(channels, nc=config.nce_width, init=config.init_used,
                                rngs=rngs),
        }  # fmt: skip
    graphdefs, params, rest = {}, {}, {}
    for name, net in nets.items():
        graphdefs[name], params[name], rest[name] = nnx.split(net, nnx.Param, ...)
    return Networks(config.method, graphdefs, params, rest)


def _optimizer(config) -> optax.GradientTransformation:
    schedule = linear_decay_schedule(
        config.learning_rate, config.steps, config.decay_steps_used
    )
    return optax.adam(schedule, b1=0.5, b2=0.999)


def initial_state(config, nets: Networks, image_shape) -> dict:
    """The training state at step 0."""
    tx = _optimizer(config)
    if nets.method == "cyclegan":
        g = {"G_A": nets.params["G_A"], "G_B": nets.params["G_B"]}
        d = {"D_A": nets.params["D_A"], "D_B": nets.params["D_B"]}
        pool = ImagePool(config.pool_size)
        pools = {"A": pool.init(image_shape), "B": pool.init(image_shape)}
    else:
        g = {"G": nets.params["G"], "F": nets.params["F"]}
        d = {"D": nets.params["D"]}
        pools = {}
    return {
        "g": g,
        "d": d,
        "opt_g": tx.init(g),
        "opt_d": tx.init(d),
        "pools": pools,
        "step": jnp.asarray(0, jnp.int32),
    }


def _nce(config, G, F, src, tgt, key, flip=None):
    """CUT's ``calculate_NCE_loss(src, tgt)``: mean over layers of the mean
    per-patch PatchNCE loss, times ``lambda_nce``."""
    layers = config.nce_layers_used
    feat_q = G.encode(tgt, layers)
    if flip is not None:  # FastCUT: undo the input flip on the query features
        feat_q = [jnp.where(flip, jnp.flip(f, axis=2), f) for f in feat_q]
    feat_k = G.encode(src, layers)
    k_pool, ids = F(feat_k, num_patches=config.num_patches, key=key)
    q_pool, _ = F(feat_q, patch_ids=ids)
    total = 0.0
    for q, k in zip(q_pool, k_pool, strict=True):
        loss = patch_nce_loss(
            q,
            k,
            temperature=config.nce_temperature,
            negatives=config.nce_negatives,
        )
        total = total + jnp.mean(loss) * config.lambda_nce_used
    return total / len(layers)


def _cut_step(config, nets: Networks, tx, state, key, real_a, real_b):
    k_nce, k_idt, k_flip = jax.random.split(key, 3)
    fast = config.method == "fastcut"
    flip = jax.random.uniform(k_flip) < 0.5 if fast else None
    nce_idt = config.nce_idt_used
    gd, gp = nets.graphdefs, state["g"]

    def generator(params):
        return nnx.merge(gd["G"], params["G"], nets.rest["G"])

    def translate(params):
        x = real_a if flip is None else jnp.where(flip, jnp.flip(real_a, 2), real_a)
        return generator(params)(x)

    # discriminator first, on the current translation
    fake = jax.lax.stop_gradient(translate(gp))

    def d_loss(dp):
        D = nnx.merge(gd["D"], dp["D"], nets.rest["D"])
        return 0.5 * (lsgan_loss(D(fake), False) + lsgan_loss(D(real_b), True))

    loss_d, grad_d = jax.value_and_grad(d_loss)(state["d"])
    upd, opt_d = tx.update(grad_d, state["opt_d"], state["d"])
    dp = optax.apply_updates(state["d"], upd)
    D = nnx.merge(gd["D"], dp["D"], nets.rest["D"])

    def g_loss(params):
        G = generator(params)
        F = nnx.merge(gd["F"], params["F"], nets.rest["F"])
        fake_b = translate(params)
        gan = lsgan_loss(D(fake_b), True) * config.lambda_gan
        nce = _nce(config, G, F, real_a, fake_b, k_nce, flip)
        if nce_idt:
            idt = G(real_b)
            nce = 0.5 * (nce + _nce(config, G, F, real_b, idt, k_idt))
        return gan + nce, (gan, nce)

    (loss_g, (gan, nce)), grad_g = jax.value_and_grad(g_loss, has_aux=True)(gp)
    upd, opt_g = tx.update(grad_g, state["opt_g"], gp)
    new = {
        **state,
        "g": optax.apply_updates(gp, upd),
        "d": dp,
        "opt_g": opt_g,
        "opt_d": opt_d,
        "step": state["step"] + 1,
    }
    return new, {"loss_g": loss_g, "loss_d": loss_d, "gan": gan, "nce": nce}


def _cyclegan_step(config, nets: Networks, tx, state, key, real_a, real_b):
    gd, rest = nets.graphdefs, nets.rest
    k_a, k_b = jax.random.split(key)
    lam, lam_idt = config.lambda_cycle, config.lambda_cycle * config.lambda_identity

    def net(name, params):
        return nnx.merge(gd[name], params[name], rest[name])

    def g_loss(gp):
        G_A, G_B = net("G_A", gp), net("G_B", gp)
        D_A, D_B = net("D_A", state["d"]), net("D_B", state["d"])
        fake_b, fake_a = G_A(real_a), G_B(real_b)
        gan = lsgan_loss(D_A(fake_b), True) + lsgan_loss(D_B(fake_a), True)
        cycle = lam * (l1_loss(G_B(fake_b), real_a) + l1_loss(G_A(fake_a), real_b))
        idt = 0.0
        if config.lambda_identity > 0:
            idt = lam_idt * (
                l1_loss(G_A(real_b), real_b) + l1_loss(G_B(real_a), real_a)
            )
        return gan + cycle + idt, (fake_a, fake_b, gan, cycle)

    (loss_g, aux), grad_g = jax.value_and_grad(g_loss, has_aux=True)(state["g"])
    fake_a, fake_b, gan, cycle = jax.tree.map(jax.lax.stop_gradient, aux)
    upd, opt_g = tx.update(grad_g, state["opt_g"], state["g"])
    gp = optax.apply_updates(state["g"], upd)
    pool = ImagePool(config.pool_size)
    shown_b, pool_b = pool.query(state["pools"]["B"], fake_b, key=k_b)
    shown_a, pool_a = pool.query(state["pools"]["A"], fake_a, key=k_a)

    def d_loss(dp):
        D_A, D_B = net("D_A", dp), net("D_B", dp)
        la = 0.5 * (lsgan_loss(D_A(real_b), True) + lsgan_loss(D_A(shown_b), False))
        lb = 0.5 * (lsgan_loss(D_B(real_a), True) + lsgan_loss(D_B(shown_a), False))
        return la + lb

    loss_d, grad_d = jax.value_and_grad(d_loss)(state["d"])
    upd, opt_d = tx.update(grad_d, state["opt_d"], state["d"])
    new = {
        "g": gp,
        "d": optax.apply_updates(state["d"], upd),
        "opt_g": opt_g,
        "opt_d": opt_d,
        "pools": {"A": pool_a, "B": pool_b},
        "step": state["step"] + 1,
    }
    return new, {"loss_g": loss_g, "loss_d": loss_d, "gan": gan, "cycle": cycle}


def make_step(config, nets: Networks):
    """``step(state, key, real_a, real_b) -> (state, losses)``, jitted.

    ``real_a`` (source) and ``real_b`` (target) are ``(B, H, W, 1)`` in
    ``[-1, 1]``; ``losses`` is a dict of scalars (``loss_g``, ``loss_d`` and the
    terms of the method).
    """
    tx = _optimizer(config)
    body = _cyclegan_step if config.method == "cyclegan" else _cut_step
    return jax.jit(functools.partial(body, config, nets, tx), donate_argnums=(0,))
