"""Every label scheme in one place: phantom tissues, tissue groups, task labels.

The phantom labels each voxel with a tissue of :data:`TISSUES` (0 is air).
Segmentation tasks use fewer classes: a :class:`LabelScheme` names them, gives
their integer values, and says which tissues each one collects. ACDC's scheme
(0 background, 1 RV blood, 2 LV myocardium, 3 LV blood) is :data:`ACDC`.

:func:`task_fractions` maps tissue fractions to task-class fractions (a sum over
the tissues of each class, so it is linear and differentiable); :func:`task_labels`
maps integer tissue labels to task labels. Class names on the command line
(``RV=1,MYO=2,LV=3``) resolve through :data:`ALIASES`.

Example:
    >>> fractions = jnp.ones((len(TISSUES), 4, 4)) / len(TISSUES)
    >>> task_fractions(fractions, ACDC).shape
    (4, 4, 4)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "TISSUES",
    "TISSUE_INDEX",
    "GROUPS",
    "ALIASES",
    "LabelScheme",
    "ACDC",
    "tissue_indices",
    "resolve_class",
    "task_fractions",
    "task_labels",
]

TISSUES: tuple[str, ...] = (
    "air",  # 0: background (outside the body, and air-filled cavities)
    "lv_blood",
    "rv_blood",
    "lv_myocardium",
    "rv_myocardium",
    "la_blood",
    "ra_blood",
    "aorta",
    "pulmonary_artery",
    "lung",
    "liver",
    "stomach",
    "spleen",
    "bone",  # spine and ribs
    "fat",  # subcutaneous, pericardial and visceral fat
    "muscle",
    "body",  # other soft tissue
)

TISSUE_INDEX: dict[str, int] = {name: i for i, name in enumerate(TISSUES)}

#: Named groups of tissues (each a tuple of names of :data:`TISSUES`).
GROUPS: dict[str, tuple[str, ...]] = {
    # blood that flows (tagging: inflow washes tags out; CT: iodine contrast)
    "blood": (
        "lv_blood",
        "rv_blood",
        "la_blood",
        "ra_blood",
        "aorta",
        "pulmonary_artery",
    ),
    "myocardium": ("lv_myocardium", "rv_myocardium"),
    # the four chambers: the phantom's heart model proper
    "chambers": (
        "lv_blood",
        "lv_myocardium",
        "rv_blood",
        "rv_myocardium",
        "la_blood",
        "ra_blood",
    ),
    # the structures a short-axis cine segmentation labels
    "ventricles": ("lv_blood", "lv_myocardium", "rv_blood"),
}

#: Short class names accepted in label specifications, and the tissue each means.
ALIASES: dict[str, str] = {"RV": "rv_blood", "MYO": "lv_myocardium", "LV": "lv_blood"}


def tissue_indices(group: str) -> tuple[int, ...]:
    """Indices into :data:`TISSUES` of a group of :data:`GROUPS` or one tissue."""
    if group in GROUPS:
        return tuple(TISSUE_INDEX[t] for t in GROUPS[group])
    if group in TISSUE_INDEX:
        return (TISSUE_INDEX[group],)
    raise ValueError(
        f"group must be one of {sorted(GROUPS)} or a tissue name; got {group!r}"
    )


def resolve_class(name: str) -> str:
    """A class name (an alias of :data:`ALIASES`, any case, or a tissue name) as the
    tissue it means; ``ValueError`` for anything else (``air`` included)."""
    tissue = ALIASES.get(name.strip().upper(), name.strip())
    if tissue not in TISSUE_INDEX or tissue == "air":
        raise ValueError(
            f"unknown class {name!r}; use one of {sorted(ALIASES)} or a tissue name "
            "of jaxsim.labels.TISSUES other than 'air'"
        )
    return tissue


@dataclasses.dataclass(frozen=True)
class LabelScheme:
    """A segmentation task's classes and the tissues each collects.

    Attributes:
        name: short name (``"acdc"``).
        classes: class names in value order; class ``c`` has label value ``c`` and
            class 0 is the background (every tissue not listed elsewhere).
        tissues: for each class after the background, the tissue names it collects.
    """

    name: str
    classes: tuple[str, ...]
    tissues: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        if len(self.tissues) != len(self.classes) - 1:
            raise ValueError(
                f"tissues must list one tuple per non-background class "
                f"({len(self.classes) - 1}); got {len(self.tissues)}"
            )
        seen: set[str] = set()
        for names in self.tissues:
            for t in names:
                if t not in TISSUE_INDEX or t == "air":
                    raise ValueError(f"tissues: unknown tissue {t!r}")
                if t in seen:
                    raise ValueError(f"tissues: {t!r} belongs to two classes")
                seen.add(t)

    @property
    def n_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.classes)

    @property
    def values(self) -> dict[str, int]:
        """``{class name: label value}``."""
        return {c: i for i, c in enumerate(self.classes)}

    def lookup(self) -> np.ndarray:
        """``(len(TISSUES),)`` uint8 table: tissue index -> class value."""
        lut = np.zeros(len(TISSUES), np.uint8)
        for value, names in enumerate(self.tissues, start=1):
            for t in names:
                lut[TISSUE_INDEX[t]] = value
        return lut

    def matrix(self, dtype=np.float32) -> np.ndarray:
        """``(n_classes, len(TISSUES))`` 0/1 matrix summing tissues into classes
        (every column has exactly one 1, so fractions keep summing to 1)."""
        m = np.zeros((self.n_classes, len(TISSUES)), dtype)
        m[self.lookup(), np.arange(len(TISSUES))] = 1
        return m


#: ACDC: 0 background, 1 RV blood pool, 2 LV myocardium, 3 LV blood pool.
ACDC = LabelScheme(
    name="acdc",
    classes=("background", "RV", "MYO", "LV"),
    tissues=(("rv_blood",), ("lv_myocardium",), ("lv_blood",)),
)


def _scheme(scheme) -> LabelScheme:
    if not isinstance(scheme, LabelScheme):
        raise TypeError(f"scheme must be a LabelScheme; got {type(scheme).__name__}")
    return scheme


def task_fractions(fractions: jax.Array, scheme: LabelScheme = ACDC) -> jax.Array:
    """Task-class fractions from tissue fractions (a differentiable sum).

    Args:
        fractions: ``(len(TISSUES), ...)`` tissue fractions (e.g. from
            :func:`jaxsim.phantoms.tissue_fractions`).
        scheme: the task's :class:`LabelScheme`.

    Returns:
        ``(scheme.n_classes, ...)`` fractions, same dtype, summing to what the
        tissue fractions summed to.
    """
    scheme = _scheme(scheme)
    fractions = jnp.asarray(fractions)
    if fractions.shape[0] != len(TISSUES):
        raise ValueError(
            f"fractions must have len(TISSUES)={len(TISSUES)} channels first; got "
            f"shape {fractions.shape}"
        )
    m = jnp.asarray(scheme.matrix(np.float64), fractions.dtype)
    return jnp.tensordot(m, fractions, axes=1)


def task_labels(labels: jax.Array, scheme: LabelScheme = ACDC) -> jax.Array:
    """Integer task labels from integer tissue labels (values index TISSUES).

    Works on NumPy and JAX arrays (the result is of the same kind), uint8.
    """
    scheme = _scheme(scheme)
    lut = scheme.lookup()
    if isinstance(labels, np.ndarray):
        return lut[labels]
    return jnp.asarray(lut)[labels]
