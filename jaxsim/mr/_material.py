"""Material maps: smooth spatial modulation of the tissue properties.

A material map is an array ``(C, g1, g2, g3)`` of log-modulations of the tissue
properties, placed on a box attached to the heart (a :class:`MaterialBox` in the
heart frame: axes ``e_rv, e_3, e_long``, origin the epicardial apex; see
:func:`jaxsim.phantoms.deformation_box`). Channel ``c = 3 * group + prop`` holds
the log-modulation of property ``prop`` (0 PD, 1 T1, 2 T2) of every tissue in
:data:`MATERIAL_GROUPS` ``[group]`` (blood pools, myocardium, all other tissues:
``C = 9``). Tissue ``t`` of group ``G`` at voxel ``x`` has the properties

    p_t(x) = p_t * exp(m_{3G + prop}(q(x)))

with ``m`` sampled trilinearly at ``q(x)``, the voxel centre's *material* point:
its end-diastolic position (:func:`jaxsim.phantoms.end_diastolic_positions`)
pulled back through the subject's residual deformation into the analytic heart
frame. So the map moves and deforms with the anatomy over the cardiac cycle, and
one map means the same region of the heart on any subject or geometry.

Node ``i`` of ``g`` along a box axis sits at fraction ``(i + 1) / (g + 1)`` of the
box; the map is zero on the box faces and outside the box (trilinear between the
outer nodes and the faces), so a map is continuous everywhere, the identity away
from the heart, and an all-zero map changes nothing. Because T1 and T2 enter the
bSSFP echo nonlinearly, the modulated signal is evaluated per tissue and voxel
(:func:`material_signals`); :func:`jaxsim.mr.acquire_cine` adds the change it
makes to the unmodulated image, which is exactly zero for a zero map (the image
is then the one without a map, bit for bit; to float rounding with a B0 field
map, whose per-voxel echoes XLA fuses differently) while the derivative stays
exact.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import is_concrete
from jaxsim.labels import GROUPS, TISSUES
from jaxsim.phantoms import (
    deform_points,
    deformation_box,
    end_diastolic_positions,
    heart_pose,
)

from ._sequence import tissue_signals
from ._tissues import PROPERTY_RANGES, TissueProperties

__all__ = [
    "MATERIAL_GROUPS",
    "MATERIAL_PROPERTIES",
    "MATERIAL_CHANNELS",
    "MaterialBox",
    "material_box",
    "material_coordinates",
    "sample_material",
    "material_signals",
    "material_change",
    "check_material",
    "check_material_bounds",
]

_HEART_GROUPS = ("blood", "myocardium")
#: Tissue groups sharing one set of channels: the blood pools (ventricles, atria,
#: great vessels), the myocardium (LV and RV), and every other tissue.
MATERIAL_GROUPS: dict[str, tuple[str, ...]] = {
    "blood": GROUPS["blood"],
    "myocardium": GROUPS["myocardium"],
    "other": tuple(
        t for t in TISSUES if not any(t in GROUPS[g] for g in _HEART_GROUPS)
    ),
}
#: Properties modulated per group, in channel order.
MATERIAL_PROPERTIES: tuple[str, ...] = ("pd", "t1", "t2")
#: Channels of a material map: ``3 * len(MATERIAL_GROUPS)``.
MATERIAL_CHANNELS: int = len(MATERIAL_PROPERTIES) * len(MATERIAL_GROUPS)
# group index of every tissue of TISSUES
_TISSUE_GROUP = np.array(
    [
        next(i for i, members in enumerate(MATERIAL_GROUPS.values()) if t in members)
        for t in TISSUES
    ],
    np.int32,
)


@dataclasses.dataclass(frozen=True)
class MaterialBox:
    """Where a material map sits: a box in the heart frame.

    Attributes:
        lower, upper: ``(3,)`` corners (mm) along ``e_rv, e_3, e_long`` relative
            to the epicardial apex (static floats; ``upper > lower``).
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    def __post_init__(self):
        lower = tuple(float(v) for v in self.lower)
        upper = tuple(float(v) for v in self.upper)
        if len(lower) != 3 or len(upper) != 3:
            raise ValueError(
                f"lower and upper must hold three numbers (mm); got {lower}, {upper}"
            )
        if not all(math.isfinite(v) for v in lower + upper) or not all(
            h > lo for lo, h in zip(lower, upper, strict=True)
        ):
            raise ValueError(
                f"upper must exceed lower on every axis (finite mm); got "
                f"lower={lower}, upper={upper}"
            )
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)


def material_box(subject, *, margin: float = 20.0) -> MaterialBox:
    """The box of a concrete subject's ventricles at end-diastole with ``margin``
    mm around them (the box of :func:`jaxsim.phantoms.deformation_box`).

    Raises:
        ValueError: ``margin`` negative or not finite.
    """
    lower, upper = deformation_box(subject, margin=margin)
    return MaterialBox(lower=lower, upper=upper)


def material_coordinates(
    subject, geometry, box: MaterialBox, *, cardiac_phases=(0.0,)
) -> jax.Array:
    """Box coordinates of every voxel centre's material point, per phase.

    The voxel centre (world mm) at each phase is taken to its end-diastolic
    position, pulled back through the subject's residual deformation (if any)
    into the analytic heart frame, and expressed as fractions of the box
    (0 and 1 on its faces; outside the box they leave [0, 1]).

    Args:
        subject: one ``Subject`` (scalar leaves; may be traced).
        geometry: the grid ``(nz, ny, nx)`` (may be traced).
        box: the :class:`MaterialBox`.
        cardiac_phases: ``(P,)`` phases in [0, 1).

    Returns:
        ``(P, 3, nz, ny, nx)`` float, axes ``e_rv, e_3, e_long``.
    """
    if not isinstance(box, MaterialBox):
        raise TypeError(f"box must be a MaterialBox; got {type(box).__name__}")
    phases = jnp.atleast_1d(jnp.asarray(cardiac_phases))
    pose = heart_pose(subject)
    points = geometry.voxel_centers()
    dtype = points.dtype
    lower = jnp.asarray(box.lower, dtype)
    size = jnp.asarray(box.upper, dtype) - lower
    out = []
    for p in range(phases.shape[0]):
        x = end_diastolic_positions(subject, points, phases[p])
        x = deform_points(subject, x, inverse=True)
        q = (x - pose.apex.astype(dtype)) @ pose.rot.astype(dtype)
        out.append(jnp.moveaxis((q - lower) / size, -1, 0))
    return jnp.stack(out)


def sample_material(material, coordinates) -> jax.Array:
    """A material map sampled trilinearly at box coordinates.

    Args:
        material: ``(C, g1, g2, g3)`` log-modulations (node ``i`` at box fraction
            ``(i + 1) / (g + 1)``; zero on the faces and outside).
        coordinates: ``(3, *S)`` box fractions (:func:`material_coordinates`).

    Returns:
        ``(C, *S)``, the material's dtype; exactly zero where the coordinates
        leave the open box.
    """
    material = jnp.asarray(material)
    channels, shape = material.shape[0], material.shape[1:]
    padded = jnp.pad(material, ((0, 0), (1, 1), (1, 1), (1, 1)))
    flat = padded.reshape(channels, -1)
    base, frac = [], []
    for a in range(3):
        n = shape[a] + 1  # index of the far face
        x = jnp.clip(coordinates[a].astype(material.dtype) * n, 0.0, float(n))
        i = jnp.clip(jnp.floor(x), 0, n - 1).astype(jnp.int32)
        base.append(i)
        frac.append(x - i.astype(x.dtype))
    strides = ((shape[1] + 2) * (shape[2] + 2), shape[2] + 2, 1)
    out = 0.0
    for corner in range(8):
        bits = [(corner >> a) & 1 for a in range(3)]
        index = sum((base[a] + bits[a]) * strides[a] for a in range(3))
        weight = 1.0
        for a in range(3):
            weight = weight * (frac[a] if bits[a] else 1.0 - frac[a])
        out = out + weight[None] * flat[:, index]
    return out


def _per_tissue(modulation):
    """``(C, *S)`` -> ``(n_tissues, 3, *S)``: each tissue's group channels."""
    n_groups = len(MATERIAL_GROUPS)
    m = modulation.reshape(n_groups, len(MATERIAL_PROPERTIES), *modulation.shape[1:])
    return m[jnp.asarray(_TISSUE_GROUP)]


def material_signals(
    tissue: TissueProperties, sequence, modulation, off_resonance=0.0
) -> jax.Array:
    """Per-tissue, per-voxel bSSFP echo under a sampled material modulation.

    Args:
        tissue: :class:`TissueProperties` with ``(n_tissues,)`` arrays.
        sequence: :class:`~jaxsim.mr.BSSFPSequence`.
        modulation: ``(C, *S)`` sampled log-modulations
            (:func:`sample_material`).
        off_resonance: Hz, scalar or broadcastable to ``(1, *S)``.

    Returns:
        ``(n_tissues, *S)`` complex echoes of ``p_t * exp(m)`` per tissue.
    """
    m = _per_tissue(modulation)
    expand = (slice(None),) + (None,) * (m.ndim - 2)
    props = TissueProperties(
        pd=tissue.pd[expand] * jnp.exp(m[:, 0]),
        t1=tissue.t1[expand] * jnp.exp(m[:, 1]),
        t2=tissue.t2[expand] * jnp.exp(m[:, 2]),
    )
    return tissue_signals(props, sequence, off_resonance)


def material_change(
    fractions,
    tissue: TissueProperties,
    sequence,
    modulation,
    base_signals,
    off_resonance=0.0,
) -> jax.Array:
    """The change a material modulation makes to the mixed echo.

    ``sum_t f_t (s_t(x) - s_t)`` with ``s_t(x)`` the modulated echo of tissue
    ``t`` at voxel ``x`` and ``s_t`` the unmodulated one. Where a tissue's group
    channels are all exactly zero the term is exactly zero (so a zero map adds
    exact zeros), with the same derivative as elsewhere.

    Args:
        fractions: ``(n_tissues, *S)`` tissue fractions.
        tissue: :class:`TissueProperties` ``(n_tissues,)``.
        sequence: the readout.
        modulation: ``(C, *S)`` sampled log-modulations.
        base_signals: the unmodulated echoes, ``(n_tissues,)``, or
            ``(n_tissues, *S)`` with a field map.
        off_resonance: Hz, scalar or ``(1, *S)`` (the field map behind
            ``base_signals``).

    Returns:
        ``(*S)`` complex.
    """
    signals = material_signals(tissue, sequence, modulation, off_resonance)
    zero = jnp.all(_per_tissue(modulation) == 0, axis=1)  # (T, *S)
    base = jnp.reshape(
        base_signals, base_signals.shape + (1,) * (signals.ndim - base_signals.ndim)
    )
    # x - stop_gradient(x) is exactly zero and has the derivative of x: where the
    # map is zero the change is exactly zero and still has the derivative of
    # s_t(x) - s_t (in the modulation and in the tissue and sequence parameters)
    ghost = (signals - jax.lax.stop_gradient(signals)) - (
        base - jax.lax.stop_gradient(base)
    )
    delta = jnp.where(zero, ghost, signals - base)
    return jnp.sum(fractions * delta, axis=0)


def check_material(material, tissue: TissueProperties | None = None, name="material"):
    """Raise for a material map of the wrong shape, non-finite values, or (with
    ``tissue``) properties that leave :data:`~jaxsim.mr.PROPERTY_RANGES` anywhere.

    Trilinear sampling mixes the nodes and zero convexly, and every range
    condition is linear in the log-modulations, so checking every node (and
    zero) covers every voxel. Tracers are skipped.

    Raises:
        ValueError: shape not ``(9, g1, g2, g3)``, NaN/inf, or invalid
            properties (naming the group, the property and the value).
    """
    shape = jnp.shape(material)
    if len(shape) != 4 or shape[0] != MATERIAL_CHANNELS or min(shape[1:]) < 1:
        raise ValueError(
            f"{name} must have shape ({MATERIAL_CHANNELS}, g1, g2, g3) with g >= 1; "
            f"got {tuple(shape)}"
        )
    if not is_concrete(material):
        return
    values = np.asarray(material, np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} holds NaN or inf")
    if tissue is None or not is_concrete(tissue.pd):
        return
    n = len(MATERIAL_PROPERTIES)
    nodes = values.reshape(len(MATERIAL_GROUPS), n, -1)
    nodes = np.concatenate([nodes, np.zeros(nodes.shape[:2] + (1,))], axis=-1)
    props = [np.asarray(getattr(tissue, p), np.float64) for p in MATERIAL_PROPERTIES]
    for t, g in enumerate(_TISSUE_GROUP):
        pd, t1, t2 = (props[k][..., t, None] * np.exp(nodes[g, k]) for k in range(n))
        (pd_lo, pd_hi), (t1_lo, t1_hi) = PROPERTY_RANGES["pd"], PROPERTY_RANGES["t1"]
        problems = [
            ("pd", pd, (pd < pd_lo) | (pd > pd_hi)),
            ("t1", t1, (t1 <= t1_lo) | (t1 > t1_hi)),
            ("t2", t2, (t2 <= PROPERTY_RANGES["t2"][0]) | (t2 > t1 * (1 + 1e-6))),
        ]
        for prop, value, bad in problems:
            if np.any(bad):
                group = list(MATERIAL_GROUPS)[g]
                raise ValueError(
                    f"{name} takes {TISSUES[t]}'s (group {group!r}) {prop} to "
                    f"{float(value[bad].flat[0]):.4g}, outside PROPERTY_RANGES "
                    f"{PROPERTY_RANGES[prop]} (T2 must not exceed T1)"
                )


def check_material_bounds(max_log, tissue: TissueProperties, name="max_log"):
    """Raise ``ValueError`` unless every map with ``|m_prop| <= max_log[prop]``
    keeps ``tissue`` inside :data:`~jaxsim.mr.PROPERTY_RANGES`.

    Args:
        max_log: ``(3,)`` bounds on the PD, T1 and T2 log-modulations (> 0).
        tissue: concrete :class:`TissueProperties` ``(n_tissues,)``.
    """
    bound = np.broadcast_to(np.asarray(max_log, np.float64), (3,))
    if not np.all(np.isfinite(bound)) or np.any(bound <= 0):
        raise ValueError(f"{name} must be > 0 per property; got {bound.tolist()}")
    extremes = np.stack(np.meshgrid(*[[-b, b] for b in bound], indexing="ij"), -1)
    corners = extremes.reshape(-1, 3)  # every sign pattern of (pd, t1, t2)
    for corner in corners:
        material = np.broadcast_to(
            np.tile(corner, len(MATERIAL_GROUPS))[:, None, None, None],
            (MATERIAL_CHANNELS, 1, 1, 1),
        )
        try:
            check_material(material, tissue, name=f"{name}={bound.tolist()}")
        except ValueError as err:
            raise ValueError(f"{err}; lower {name}") from None
