"""Placement of an image grid in world millimetres (NIfTI-style affine).

World coordinates are ``(x, y, z)`` in mm in the NIfTI RAS+ convention: ``+x`` points
to the patient's right, ``+y`` anterior, ``+z`` superior (towards the head). An image
of shape ``(nz, ny, nx)`` is indexed ``[k, j, i]``; its affine maps the homogeneous
voxel index ``(i, j, k, 1)`` (``i`` along x, the fastest axis) to world
``(x, y, z, 1)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import check_finite, is_concrete

__all__ = ["ImageGeometry"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ImageGeometry:
    """An oriented voxel grid: a static shape and a 4x4 voxel-to-world affine.

    Attributes:
        affine: ``(4, 4)`` float array (a pytree leaf, so it can be traced and
            differentiated); maps voxel indices ``(i, j, k, 1)`` to world mm
            ``(x, y, z, 1)``. Column ``c`` of ``affine[:3, :3]`` is the step in mm
            along index ``c``; ``affine[:3, 3]`` is the centre of voxel ``(0, 0, 0)``.
        shape: ``(nz, ny, nx)`` static tuple of ints.
        nominal_spacing: static ``(sz, sy, sx)`` mm known when the grid was planned
            (set by :meth:`from_axes` from concrete spacings), or ``None``. It lets
            work whose sizes depend on the spacing (automatic sub-sampling, coil
            field lattices, detector sizes) be planned when the affine itself is
            traced, e.g. a short-axis plan made inside ``jax.vmap``.

    Example:
        >>> geom = ImageGeometry.from_axes(
        ...     center=(0.0, 0.0, 0.0), axes=jnp.eye(3), spacing=(2.0, 1.0, 1.0),
        ...     shape=(4, 8, 8))
        >>> geom.voxel_centers().shape
        (4, 8, 8, 3)
    """

    affine: jax.Array
    shape: tuple[int, int, int] = dataclasses.field(metadata=dict(static=True))
    nominal_spacing: tuple[float, float, float] | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(
                f"shape must be three positive ints (nz, ny, nx); got {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)
        if self.nominal_spacing is not None:
            nominal = tuple(float(s) for s in self.nominal_spacing)
            if len(nominal) != 3 or not all(np.isfinite(s) and s > 0 for s in nominal):
                raise ValueError(
                    "nominal_spacing must be three positive finite mm (sz, sy, sx); "
                    f"got {self.nominal_spacing!r}"
                )
            object.__setattr__(self, "nominal_spacing", nominal)
        affine = self.affine
        if isinstance(affine, (np.ndarray, jax.Array, list, tuple)) and is_concrete(
            affine
        ):
            arr = np.asarray(affine, dtype=np.float64)
            if arr.shape != (4, 4):
                raise ValueError(f"affine must have shape (4, 4); got {arr.shape}")
            check_finite("affine", arr)
            if abs(np.linalg.det(arr[:3, :3])) <= 1e-12:
                raise ValueError("affine[:3, :3] must be non-singular (det != 0)")

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_axes(
        cls,
        *,
        center,
        axes,
        spacing,
        shape: tuple[int, int, int],
    ) -> ImageGeometry:
        """A grid centred on ``center`` with unit direction ``axes`` per index.

        Args:
            center: ``(3,)`` world mm of the grid's centre (the midpoint of the
                first and last voxel centres along every axis).
            axes: ``(3, 3)`` array whose rows are the unit world directions of the
                ``i``, ``j`` and ``k`` index axes (x, y, z order of indices).
            spacing: ``(sz, sy, sx)`` voxel size in mm (same order as ``shape``).
            shape: ``(nz, ny, nx)``.

        Returns:
            The ``ImageGeometry``.
        """
        axes = jnp.asarray(axes)
        dtype = jnp.result_type(axes.dtype, float)
        axes = axes.astype(dtype)
        spacing = tuple(spacing)
        if len(spacing) != 3:
            raise ValueError(f"spacing must have 3 entries (sz, sy, sx); got {spacing}")
        nominal = None
        if is_concrete(*spacing):
            nominal = tuple(float(np.asarray(s)) for s in spacing)
            if not all(np.isfinite(s) and s > 0 for s in nominal):
                raise ValueError(
                    f"spacing must be three positive finite mm; got {nominal}"
                )
        sz, sy, sx = (jnp.asarray(s, dtype) for s in spacing)
        nz, ny, nx = (int(n) for n in shape)
        steps = jnp.stack([axes[0] * sx, axes[1] * sy, axes[2] * sz], axis=1)
        half = jnp.asarray([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2], dtype)
        origin = jnp.asarray(center, dtype) - steps @ half
        top = jnp.concatenate([steps, origin[:, None]], axis=1)
        bottom = jnp.asarray([[0.0, 0.0, 0.0, 1.0]], dtype)
        return cls(
            affine=jnp.concatenate([top, bottom], axis=0),
            shape=(nz, ny, nx),
            nominal_spacing=nominal,
        )

    @classmethod
    def axis_aligned(
        cls, *, shape: tuple[int, int, int], spacing, center=(0.0, 0.0, 0.0)
    ) -> ImageGeometry:
        """A grid whose index axes are world ``x, y, z``, centred on ``center``."""
        return cls.from_axes(
            center=center, axes=jnp.eye(3), spacing=spacing, shape=shape
        )

    # ------------------------------------------------------------------ queries
    def static_spacing(self) -> tuple[float, float, float] | None:
        """``(sz, sy, sx)`` mm as Python floats when known without tracing: the
        :attr:`nominal_spacing`, else the spacing of a concrete affine; ``None``
        when the affine is traced and no nominal spacing was recorded."""
        if self.nominal_spacing is not None:
            return self.nominal_spacing
        if is_concrete(self.affine):
            steps = np.asarray(self.affine, dtype=np.float64)[:3, :3]
            sx, sy, sz = np.linalg.norm(steps, axis=0)
            return float(sz), float(sy), float(sx)
        return None

    def without_nominal_spacing(self) -> ImageGeometry:
        """The same grid with ``nominal_spacing=None`` (so jitted functions that
        take a geometry do not recompile for every spacing)."""
        if self.nominal_spacing is None:
            return self
        return ImageGeometry(affine=self.affine, shape=self.shape)

    @property
    def spacing(self) -> jax.Array:
        """``(3,)`` voxel size in mm, ordered ``(sz, sy, sx)`` like ``shape``."""
        norms = jnp.linalg.norm(self.affine[:3, :3], axis=0)  # (sx, sy, sz)
        return norms[::-1]

    @property
    def voxel_volume(self) -> jax.Array:
        """Scalar voxel volume in mm^3 (``|det affine[:3, :3]|``)."""
        return jnp.abs(jnp.linalg.det(self.affine[:3, :3]))

    @property
    def axes(self) -> jax.Array:
        """``(3, 3)`` unit world directions of the ``i, j, k`` axes (rows)."""
        steps = self.affine[:3, :3]
        return (steps / jnp.linalg.norm(steps, axis=0)).T

    @property
    def center(self) -> jax.Array:
        """``(3,)`` world mm of the grid's centre."""
        nz, ny, nx = self.shape
        half = jnp.asarray([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2, 1.0])
        return (self.affine @ half.astype(self.affine.dtype))[:3]

    def world_coordinates(self, index) -> jax.Array:
        """World mm of (possibly fractional) voxel indices.

        Args:
            index: ``(..., 3)`` voxel indices ordered ``(i, j, k)`` (x, y, z).

        Returns:
            ``(..., 3)`` world coordinates ``(x, y, z)`` in mm.
        """
        index = jnp.asarray(index, self.affine.dtype)
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]

    def voxel_centers(self, k=None) -> jax.Array:
        """World mm of voxel centres.

        Args:
            k: optional slice index (int or traced scalar); if given, only that
                slice's centres are returned.

        Returns:
            ``(nz, ny, nx, 3)`` (or ``(ny, nx, 3)`` for one slice) world ``(x, y, z)``.
        """
        nz, ny, nx = self.shape
        dtype = self.affine.dtype
        i = jnp.arange(nx, dtype=dtype)
        j = jnp.arange(ny, dtype=dtype)
        if k is None:
            kk = jnp.arange(nz, dtype=dtype)
            grid = jnp.stack(jnp.meshgrid(i, j, kk, indexing="xy"), axis=-1)
            # meshgrid "xy" gives (ny, nx, nz); move z first.
            grid = jnp.moveaxis(grid, 2, 0)
        else:
            jj, ii = jnp.meshgrid(j, i, indexing="ij")
            kk = jnp.broadcast_to(jnp.asarray(k, dtype), ii.shape)
            grid = jnp.stack([ii, jj, kk], axis=-1)
        return self.world_coordinates(grid)
