"""The SPADE (GauGAN) enhancer: physics renderings made realistic, anatomy kept.

A run learns a :class:`~jaxsim.models.SPADEGenerator` that maps a condition
(the one-hot ACDC labels and the normalised physics rendering, 5 channels) to
the real image, on pairs that patient twins provide
(:func:`~jaxsim.train.enhancer_pairs`). Every SPADE layer sees the labels and
the rendering, so the network can keep the rendering's anatomy and contrast
order while it learns the real images' texture, noise and intensities.

Training follows GauGAN (NVlabs/SPADE): a multiscale PatchGAN discriminator on
``concat(condition, image)``, the hinge loss, discriminator feature matching
(``lambda_feat`` 10) and TTUR (Adam, beta (0, 0.9), lr_G 1e-4, lr_D 4e-4); per
step the generator is updated first, then the discriminator on the updated
generator's image, as in the reference's ``run_one_step``. One deviation: the
reference's VGG19 perceptual loss needs ImageNet weights that are not
available offline, so an L1 loss between the generated and the paired real
image takes its place (``lambda_l1``, 10 like the reference's ``lambda_vgg``);
the pairs make that possible.

This module holds the configuration, the condition, the networks and the
training step; :mod:`._enhance_run` the run folder (checkpoints, metrics,
sample grids) and loading.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxsim.io import CheckpointStore
from jaxsim.labels import ACDC
from jaxsim.losses import feature_matching_loss, hinge_gan_loss, l1_loss
from jaxsim.models import UPSAMPLING_LAYERS, MultiscaleDiscriminator, SPADEGenerator
from jaxsim.random import stream

from ._data import Preprocessing
from ._loop import _from_store, _to_store
from ._translate import to_unit_range
from ._translate_steps import linear_decay_schedule

__all__ = [
    "ENHANCER_FORMAT",
    "ENHANCER_REFERENCE_SIZES",
    "EnhancerConfig",
    "EnhancerTrainer",
    "build_enhancer",
    "enhance",
    "enhancer_condition",
]

ENHANCER_FORMAT = "jaxsim-enhancer"
#: Condition channels: one-hot ACDC classes, then the physics image.
N_CLASSES = ACDC.n_classes
CONDITION_CHANNELS = N_CLASSES + 1
#: GauGAN's sizes (``--reference``): ngf 64, SPADE hidden 128, ndf 64, 256 px.
ENHANCER_REFERENCE_SIZES = {
    "ngf": 64,
    "hidden": 128,
    "ndf": 64,
    "shape": (256, 256),
    "spacing": 1.25,
}


def _positive_int(name, value, low=1):
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class EnhancerConfig:
    """An enhancer run, saved in ``RUN_DIR/config.json``.

    Attributes:
        real: real HDF5 files (``image``, ``label``) or folders of them.
        twins: twin folders of ``jaxsim twin`` (or folders of them).
        data_spacing: ``(sz, sy, sx)`` mm of the real files (the twins' too).
        steps: optimisation steps (one generator and one discriminator update).
        batch_size: pairs per step (1 in the reference).
        shape: ``(H, W)`` slice size, multiples of ``2^n`` (``n`` upsamplings).
        spacing: in-plane pixel size of the slices, mm.
        ngf: generator base width (64 in the reference).
        hidden: SPADE hidden width (128 in the reference).
        ndf: discriminator width (64).
        n_layers_d: discriminator layers (4).
        num_d: discriminators of the multiscale discriminator (2).
        num_upsampling_layers: ``"normal"`` (5), ``"more"`` (6), ``"most"`` (7).
        spectral: spectral normalisation in the generator's residual blocks and
            the discriminators (the reference's default).
        lr_g, lr_d: Adam rates of the generator and the discriminator (TTUR:
            1e-4 and 4e-4).
        beta1, beta2: Adam's betas (0, 0.9 with TTUR).
        decay_steps: steps of linear decay to zero at the end (the reference's
            ``niter_decay``, 0).
        lambda_gan, lambda_feat, lambda_l1: weights of the hinge GAN loss (1),
            the feature matching (10) and the L1 to the real image (10; it
            replaces the reference's VGG loss).
        sample_every: steps between PNG grids.
        checkpoint_every: steps between checkpoints.
        seed: seed of the weights, the renderings and the batches.
    """

    real: tuple = ()
    twins: tuple = ()
    data_spacing: tuple | None = None
    steps: int = 2000
    batch_size: int = 1
    shape: tuple = (128, 128)
    spacing: float = 2.5
    ngf: int = 16
    hidden: int = 32
    ndf: int = 32
    n_layers_d: int = 4
    num_d: int = 2
    num_upsampling_layers: str = "normal"
    spectral: bool = True
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    decay_steps: int = 0
    lambda_gan: float = 1.0
    lambda_feat: float = 10.0
    lambda_l1: float = 10.0
    sample_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "sample_every", "checkpoint_every"):
            _positive_int(name, getattr(self, name))
        for name in ("ngf", "hidden", "ndf", "n_layers_d", "num_d"):
            _positive_int(name, getattr(self, name))
        if self.num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ValueError(
                f"num_upsampling_layers must be one of {tuple(UPSAMPLING_LAYERS)}; "
                f"got {self.num_upsampling_layers!r}"
            )
        f = 2 ** UPSAMPLING_LAYERS[self.num_upsampling_layers]
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 2 or min(shape) < f or any(n % f for n in shape):
            raise ValueError(
                f"shape must be (H, W), positive multiples of {f} (2^upsamplings); "
                f"got {self.shape}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "real", tuple(str(p) for p in self.real))
        object.__setattr__(self, "twins", tuple(str(p) for p in self.twins))
        if self.data_spacing is not None:
            sp = tuple(float(s) for s in self.data_spacing)
            if len(sp) != 3 or not all(s > 0 for s in sp):
                raise ValueError(
                    f"data_spacing must be three positive mm; got {self.data_spacing}"
                )
            object.__setattr__(self, "data_spacing", sp)
        if not self.spacing > 0:
            raise ValueError(f"spacing must be > 0 mm; got {self.spacing}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must lie in [0, 1); got {getattr(self, name)}"
                )
        if not 0 <= self.decay_steps <= self.steps:
            raise ValueError(
                f"decay_steps must lie in [0, steps={self.steps}]; got "
                f"{self.decay_steps}"
            )
        for name in ("lambda_gan", "lambda_feat", "lambda_l1"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2^31); got {self.seed!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EnhancerConfig:
        data = dict(data)
        for key in ("shape", "real", "twins", "data_spacing"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(shape=self.shape, spacing=self.spacing)


def enhancer_condition(image, labels) -> jax.Array:
    """The generator's input: ``concat(one-hot labels, image)``.

    Args:
        image: ``(B, H, W)`` normalised physics image (0 to about 1; mapped to
            ``[-1, 1]`` by :func:`to_unit_range`, values above 1 clip).
        labels: ``(B, H, W)`` integer ACDC labels (0 background, 1 RV, 2 MYO,
            3 LV), or ``(B, H, W, 4)`` class fractions (soft labels, e.g.
            :func:`jaxsim.labels.task_fractions` moved channel-last), which keep
            the condition differentiable in the anatomy.

    Returns:
        ``(B, H, W, 5)``, float32 (float64 for float64 images).
    """
    x = to_unit_range(image)
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != x.shape[:-1]:
            raise ValueError(
                f"labels must be (B, H, W) like image {x.shape[:-1]}; got "
                f"{labels.shape}"
            )
        onehot = jax.nn.one_hot(labels, N_CLASSES, dtype=x.dtype)
    else:
        if labels.shape != (*x.shape[:-1], N_CLASSES):
            raise ValueError(
                f"soft labels must be (B, H, W, {N_CLASSES}); got {labels.shape}"
            )
        onehot = labels.astype(x.dtype)
    return jnp.concatenate([onehot, x], axis=-1)


def enhance(model, image, labels) -> jax.Array:
    """Enhance physics images (differentiable; ``jit``/``grad`` work).

    Args:
        model: the trained :class:`~jaxsim.models.SPADEGenerator` (from
            :func:`load_enhancer`; in evaluation mode).
        image: ``(B, H, W)`` physics images normalised as in training (per
            slice divided by the 99.5th percentile, at the model's pixel size);
            ``H`` and ``W`` multiples of ``model.factor`` (32 with the default
            five upsamplings).
        labels: ``(B, H, W)`` integer ACDC labels or ``(B, H, W, 4)`` class
            fractions (see :func:`enhancer_condition`).

    Returns:
        ``(B, H, W)`` enhanced images in ``[0, 1]`` (the normalised
        intensity scale of the real images).
    """
    y = model(enhancer_condition(image, labels))
    return (y[..., 0] + 1.0) * 0.5


def build_enhancer(config: EnhancerConfig, *, rngs: nnx.Rngs | None = None):
    """``(generator, discriminator)`` of ``config``, initialised from its seed."""
    rngs = nnx.Rngs(config.seed) if rngs is None else rngs
    g = SPADEGenerator(
        CONDITION_CHANNELS, 1, ngf=config.ngf, hidden=config.hidden,
        num_upsampling_layers=config.num_upsampling_layers,
        spectral=config.spectral, rngs=rngs,
    )  # fmt: skip
    d = MultiscaleDiscriminator(
        CONDITION_CHANNELS + 1, ndf=config.ndf, n_layers=config.n_layers_d,
        num_d=config.num_d, spectral=config.spectral, rngs=rngs,
    )  # fmt: skip
    return g, d


def _optimizers(config: EnhancerConfig):
    def adam(lr):
        schedule = lr  # the reference's default: constant (niter_decay 0)
        if config.decay_steps:
            schedule = linear_decay_schedule(lr, config.steps, config.decay_steps)
        return optax.adam(schedule, b1=config.beta1, b2=config.beta2)

    return adam(config.lr_g), adam(config.lr_d)


def _rest(module):
    """The module's non-parameter state (spectral-norm vectors)."""
    return nnx.split(module, nnx.Param, ...)[2]


def _discriminate(D, cond, fake, real):
    """D on fake and real pairs in one batch (as the reference); split back."""
    n = cond.shape[0]
    both = jnp.concatenate(
        [jnp.concatenate([cond, fake], -1), jnp.concatenate([cond, real], -1)], 0
    )
    out = D(both)
    return [[f[:n] for f in o] for o in out], [[f[n:] for f in o] for o in out]


def _train_step(config, graphdefs, tx_g, tx_d, state, cond, real):
    gd_g, gd_d = graphdefs

    def g_loss(gp, g_stats, d_stats):
        G = nnx.merge(gd_g, gp, g_stats, copy=True)
        D = nnx.merge(gd_d, state["d"], d_stats, copy=True)
        fake = G(cond)
        pf, pr = _discriminate(D, cond, fake, real)
        gan = hinge_gan_loss(pf, True, for_discriminator=False)
        feat = feature_matching_loss(pf, pr)
        l1 = l1_loss(fake, real)
        total = (
            config.lambda_gan * gan + config.lambda_feat * feat + config.lambda_l1 * l1
        )
        return total, (_rest(G), _rest(D), gan, feat, l1)

    (loss_g, aux), grad_g = jax.value_and_grad(g_loss, has_aux=True)(
        state["g"], state["g_stats"], state["d_stats"]
    )
    g_stats, d_stats, gan, feat, l1 = aux
    upd, opt_g = tx_g.update(grad_g, state["opt_g"], state["g"])
    gp = optax.apply_updates(state["g"], upd)

    # the discriminator sees the updated generator's image (reference order)
    G = nnx.merge(gd_g, gp, g_stats, copy=True)
    fake = jax.lax.stop_gradient(G(cond))
    g_stats = _rest(G)

    def d_loss(dp, d_stats):
        D = nnx.merge(gd_d, dp, d_stats, copy=True)
        pf, pr = _discriminate(D, cond, fake, real)
        d_fake = hinge_gan_loss(pf, False)
        d_real = hinge_gan_loss(pr, True)
        return d_fake + d_real, (_rest(D), d_fake, d_real)

    (loss_d, (d_stats, d_fake, d_real)), grad_d = jax.value_and_grad(
        d_loss, has_aux=True
    )(state["d"], d_stats)
    upd, opt_d = tx_d.update(grad_d, state["opt_d"], state["d"])
    new = {
        "g": gp,
        "d": optax.apply_updates(state["d"], upd),
        "g_stats": g_stats,
        "d_stats": d_stats,
        "opt_g": opt_g,
        "opt_d": opt_d,
        "step": state["step"] + 1,
    }
    losses = {
        "loss_g": loss_g, "loss_d": loss_d, "gan": gan, "feat": feat, "l1": l1,
        "d_real": d_real, "d_fake": d_fake,
    }  # fmt: skip
    return new, losses


def _step_key(config: EnhancerConfig) -> EnhancerConfig:
    """The settings a training step depends on (runs that differ only in data,
    length or logging share one compiled step)."""
    keep = {} if config.decay_steps else {"steps": 1}
    return dataclasses.replace(
        config, real=(), twins=(), data_spacing=None, sample_every=1,
        checkpoint_every=1, **keep,
    )  # fmt: skip


@functools.lru_cache(maxsize=4)
def _compiled_step(config: EnhancerConfig):
    g, d = nnx.eval_shape(lambda: build_enhancer(config))
    graphdefs = (nnx.split(g, nnx.Param, ...)[0], nnx.split(d, nnx.Param, ...)[0])
    tx_g, tx_d = _optimizers(config)
    body = functools.partial(_train_step, config, graphdefs, tx_g, tx_d)
    return jax.jit(body, donate_argnums=(0,))


class EnhancerTrainer:
    """The networks, state, data and compiled step of one enhancer run.

    Args:
        config: the run's :class:`EnhancerConfig`.
        pairs: :class:`~jaxsim.train.EnhancerPairs` (``None`` to only restore
            and enhance).
    """

    def __init__(self, config: EnhancerConfig, pairs=None):
        self.config = config
        g, d = build_enhancer(config)
        gd_g, g_params, g_stats = nnx.split(g, nnx.Param, ...)
        gd_d, d_params, d_stats = nnx.split(d, nnx.Param, ...)
        self.graphdefs = (gd_g, gd_d)
        tx_g, tx_d = _optimizers(config)
        self.state = {
            "g": g_params,
            "d": d_params,
            "g_stats": g_stats,
            "d_stats": d_stats,
            "opt_g": tx_g.init(g_params),
            "opt_d": tx_d.init(d_params),
            "step": jnp.asarray(0, jnp.int32),
        }
        self.pairs = pairs
        self.root = jax.random.key(config.seed)
        self._step = _compiled_step(_step_key(config))

    @property
    def step_count(self) -> int:
        return int(self.state["step"])

    def batch(self, step: int):
        """``(condition (B, H, W, 5), real (B, H, W, 1))`` of step ``step``."""
        key = jax.random.fold_in(stream(self.root, "enh.batch"), step)
        labels, physics, real = self.pairs.batch(key, self.config.batch_size)
        return enhancer_condition(physics, labels), to_unit_range(real)

    def step(self) -> dict:
        cond, real = self.batch(self.step_count)
        self.state, losses = self._step(self.state, cond, real)
        return {k: float(v) for k, v in losses.items()}

    def generator(self) -> SPADEGenerator:
        """The generator with the current weights, in evaluation mode (its
        spectral-norm vectors are not advanced by calls)."""
        g = nnx.merge(self.graphdefs[0], self.state["g"], self.state["g_stats"])
        g.eval()
        return g

    def save(self, store: CheckpointStore, meta: dict) -> None:
        flat, layout = _to_store(self.state)
        store.save(self.step_count, flat, {**meta, "layout": layout})

    def restore(self, store: CheckpointStore, step: int | None = None) -> dict:
        flat_like, layout = _to_store(self.state)
        meta = store.read_meta(step)
        if meta.get("layout") != layout:
            raise ValueError(
                f"the checkpoint in {store.directory} holds other networks than "
                "this configuration builds"
            )
        flat, meta = store.restore(flat_like, step)
        self.state = _from_store(flat, self.state)
        return meta
