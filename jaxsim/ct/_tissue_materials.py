"""What each tissue is made of for X-rays: a learnable pytree built from one table.

A tissue is a mixture of tabulated basis materials (ICRU-44 compositions at their
nominal densities, :func:`~jaxsim.ct.material_names`) by volume fraction, plus
dissolved iodine contrast in mg/mL. :class:`CTMaterials` holds those numbers as
leaves, so gradients reach them (fitting HU to a real scan, learning contrast
uptake), and registers a bijection to an unconstrained vector
(:mod:`jaxsim.parameters`) that uses the same ranges as validation,
:data:`MATERIAL_RANGES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import check_range, is_concrete
from jaxsim.labels import TISSUES
from jaxsim.parameters import FieldBounds, ParameterSpec, register_parameters

from ._materials import material_names

__all__ = [
    "DEFAULT_TISSUE_MATERIALS",
    "MATERIAL_RANGES",
    "CTMaterials",
    "default_ct_materials",
    "check_materials",
    "as_ct_materials",
]

# tissue -> ({material: volume fraction}, iodine mg/mL). Contrast values give an
# arterial-phase chest CT. Tuned so that a 120 kVp scan of the default phantom (whose
# torso hardens the beam like ~300 mm of water) gives blood pools near 500 HU, like
# the real contrast CT in shared/data (heart-mask median ~ 466 HU, blood ~ 500).
DEFAULT_TISSUE_MATERIALS: dict[str, tuple[dict[str, float], float]] = {
    "air": ({"air": 1.0}, 0.0),
    "lv_blood": ({"blood": 1.0}, 18.0),
    "la_blood": ({"blood": 1.0}, 18.0),
    "aorta": ({"blood": 1.0}, 18.0),
    "rv_blood": ({"blood": 1.0}, 16.0),
    "ra_blood": ({"blood": 1.0}, 16.0),
    "pulmonary_artery": ({"blood": 1.0}, 16.0),
    "lv_myocardium": ({"myocardium": 1.0}, 2.5),
    "rv_myocardium": ({"myocardium": 1.0}, 2.5),
    # Aerated parenchyma: ICRU lung tissue at 0.26 g/cm^3 with extra air (~ -800 HU).
    "lung": ({"lung": 0.75, "air": 0.25}, 0.0),
    "liver": ({"liver": 1.0}, 1.0),
    "stomach": ({"soft_tissue": 1.0}, 0.0),
    "spleen": ({"soft_tissue": 1.0}, 1.0),
    # Spine and ribs: mostly trabecular bone, modelled as cortical bone in marrow.
    "bone": ({"bone": 0.2, "soft_tissue": 0.8}, 0.0),
    "fat": ({"adipose": 1.0}, 0.0),
    "muscle": ({"muscle": 1.0}, 0.0),
    "body": ({"soft_tissue": 1.0}, 0.0),
}

#: Allowed values: ``(low, high)`` per field. ``composition`` is the volume
#: fraction of one basis material in one tissue (each entry separately: a row need
#: not sum to 1, a sum below 1 being a less dense mixture); ``iodine`` is mg/mL of
#: elemental iodine, up to undiluted contrast agent. Validation and the
#: unconstrained bijection both use this one table.
MATERIAL_RANGES: dict[str, tuple[float, float]] = {
    "composition": (0.0, 1.0),
    "iodine": (0.0, 400.0),
}

IODINE = "iodine"
# mg/mL -> g/cm^3, the unit of the iodine basis map.
_MG_PER_ML = 1e-3


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTMaterials:
    """The X-ray make-up of every tissue: basis-material fractions and iodine.

    Attributes:
        composition: ``(..., n_tissues, n_materials)`` volume fraction of each basis
            material (at its nominal density) in each tissue, in [0, 1]; leaf.
        iodine: ``(..., n_tissues)`` dissolved iodine, mg/mL, in [0, 400]; leaf.
        materials: static; basis material names (from
            :func:`~jaxsim.ct.material_names`), the order of the columns.
        tissues: static; tissue names, the order of the rows (and of the channels
            of the fractions this is applied to); default
            :data:`jaxsim.labels.TISSUES`.

    Leading axes batch (e.g. one row of materials per subject under ``vmap``).

    Example:
        >>> m = default_ct_materials()
        >>> m = m.replace(iodine=m.iodine.at[m.index("lv_blood")].set(12.0))
    """

    composition: jax.Array
    iodine: jax.Array
    materials: tuple[str, ...] = dataclasses.field(metadata=dict(static=True))
    tissues: tuple[str, ...] = dataclasses.field(
        default=TISSUES, metadata=dict(static=True)
    )

    def __post_init__(self):
        object.__setattr__(self, "tissues", tuple(self.tissues))
        object.__setattr__(self, "materials", tuple(self.materials))
        known = material_names()
        bad = [m for m in self.materials if m not in known or m == IODINE]
        if bad:
            raise ValueError(
                f"materials must be tabulated basis materials other than "
                f"{IODINE!r} (one of {known}); got {bad}"
            )

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, tuple[Mapping[str, float], float]] | None = None,
        *,
        tissues: tuple[str, ...] | None = None,
        dtype=None,
    ) -> CTMaterials:
        """Materials from a table ``tissue -> ({material: fraction}, iodine mg/mL)``.

        Args:
            table: default :data:`DEFAULT_TISSUE_MATERIALS`.
            tissues: the row order; default :data:`jaxsim.labels.TISSUES`.
            dtype: float dtype of the leaves (default JAX's default float).

        Returns:
            The :class:`CTMaterials`; its basis is every material the table uses,
            sorted by name.

        Raises:
            ValueError: a tissue without an entry, or an unknown material.
        """
        table = DEFAULT_TISSUE_MATERIALS if table is None else table
        tissues = TISSUES if tissues is None else tuple(tissues)
        missing = [t for t in tissues if t not in table]
        if missing:
            raise ValueError(f"table lacks entries for tissues {missing}")
        materials = tuple(sorted({m for t in tissues for m in table[t][0]}))
        composition = np.zeros((len(tissues), len(materials)))
        iodine = np.zeros(len(tissues))
        for i, tissue in enumerate(tissues):
            fractions, iodine[i] = table[tissue]
            for name, value in fractions.items():
                composition[i, materials.index(name)] = value
        dtype = dtype or jnp.zeros(()).dtype
        return cls(
            composition=jnp.asarray(composition, dtype),
            iodine=jnp.asarray(iodine, dtype),
            tissues=tissues,
            materials=materials,
        )

    @property
    def basis(self) -> tuple[str, ...]:
        """Names of the basis maps: the materials, then ``"iodine"`` (static)."""
        return (*self.materials, IODINE)

    def index(self, tissue: str) -> int:
        """Row of a tissue."""
        if tissue not in self.tissues:
            raise ValueError(f"tissue must be one of {self.tissues}; got {tissue!r}")
        return self.tissues.index(tissue)

    def mixing(self) -> jax.Array:
        """``(..., n_basis, n_tissues)`` matrix from tissue fractions to basis maps.

        Material rows are volume fractions (at nominal density); the iodine row is
        g/cm^3, so that a basis map times the material's attenuation per unit map
        (:func:`~jaxsim.ct.attenuation` at nominal density, iodine at 1 g/cm^3)
        is attenuation in 1/mm.
        """
        iodine = jnp.asarray(self.iodine)[..., None, :] * _MG_PER_ML
        return jnp.concatenate([jnp.swapaxes(self.composition, -1, -2), iodine], -2)

    def replace(self, **changes) -> CTMaterials:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def default_ct_materials(*, dtype=None) -> CTMaterials:
    """:data:`DEFAULT_TISSUE_MATERIALS` for :data:`jaxsim.labels.TISSUES`."""
    return CTMaterials.from_table(dtype=dtype)


def as_ct_materials(materials, tissues: tuple[str, ...] | None = None) -> CTMaterials:
    """``materials`` as :class:`CTMaterials`: ``None`` (the defaults), a table
    (``tissue -> ({material: fraction}, iodine mg/mL)``) or a ``CTMaterials``."""
    if materials is None or isinstance(materials, Mapping):
        return CTMaterials.from_table(materials, tissues=tissues)
    if not isinstance(materials, CTMaterials):
        raise TypeError(
            "materials must be a CTMaterials, a table tissue -> (fractions, iodine) "
            f"or None; got {type(materials).__name__}"
        )
    if tissues is not None and tuple(tissues) != materials.tissues:
        raise ValueError(
            f"materials.tissues {materials.tissues} differ from the fractions' "
            f"tissues {tuple(tissues)}"
        )
    return materials


def check_materials(materials: CTMaterials, name: str = "materials") -> None:
    """Raise ``ValueError`` if concrete values leave :data:`MATERIAL_RANGES` or the
    shapes do not match the static names (traced values are skipped)."""
    if not isinstance(materials, CTMaterials):
        raise TypeError(f"{name} must be a CTMaterials; got {type(materials)}")
    n_t, n_m = len(materials.tissues), len(materials.materials)
    comp, iodine = jnp.shape(materials.composition), jnp.shape(materials.iodine)
    if comp[-2:] != (n_t, n_m) or iodine[-1:] != (n_t,):
        raise ValueError(
            f"{name}.composition must end with shape ({n_t}, {n_m}) and "
            f"{name}.iodine with ({n_t},) (tissues x materials); got {comp} and "
            f"{iodine}"
        )
    for field, (low, high) in MATERIAL_RANGES.items():
        value = getattr(materials, field)
        if is_concrete(value):
            unit = "mg/mL" if field == "iodine" else ""
            check_range(
                f"{name}.{field}",
                value,
                low=low,
                high=high,
                low_inclusive=True,
                unit=unit,
            )


register_parameters(
    CTMaterials,
    ParameterSpec(
        fields=(
            FieldBounds("composition", *MATERIAL_RANGES["composition"], event_ndim=2),
            FieldBounds("iodine", *MATERIAL_RANGES["iodine"], event_ndim=1),
        ),
        data=("tissues", "materials"),
    ),
)
