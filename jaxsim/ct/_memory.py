"""Memory planning of a CT simulation: peak estimate, chunk sizes, refusal.

A scan's arrays grow with the grid (basis maps, reconstruction), with views x
detector pixels (projections), and with the intermediates of whatever is computed
at once. The simulation rasterises the phantom in slabs of slices and projects the
views in chunks; this module sizes both to the memory the machine has, estimates
the peak resident memory beforehand, and refuses a job that cannot fit with a
message naming the estimate.

The estimate models the three phases of the simulation (rasterise, project,
reconstruct), each as the arrays it holds, plus a fixed process baseline
(interpreter, JAX runtime, compiled code); the largest phase is the peak. On the
CPU the arrays live in the process's memory, so the limit is the machine's
available memory; on an accelerator they live on the device, so the limit is the
device's free memory and the host baseline is left out.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import sys

__all__ = ["CTMemoryPlan", "available_memory", "plan_ct_memory", "format_bytes"]

GiB = 1 << 30
MiB = 1 << 20
#: Resident memory of the process besides the job's arrays: Python, JAX, and what
#: XLA keeps of compiling the simulation (measured on CPU; see
#: tests/ct/test_memory.py); compiling the phantom rasteriser adds RASTER_COMPILE.
BASELINE = 576 * MiB
RASTER_COMPILE = 320 * MiB
#: Largest intermediates of one view chunk or one slab when memory is plentiful;
#: more buys no speed.
CHUNK_TARGET = 256 * MiB
#: Fraction of the available memory a job may plan to use.
SAFETY = 0.85
# Temporaries per detector pixel of a view chunk beyond the basis line integrals
# (transmission, noise keys and draws, log, the correction's table look-up;
# calibrated on XLA's buffer assignment, see tests/ct/test_memory.py).
_CHUNK_TEMPS = 18
# Views the FDK filters at once (jaxsim/kernels/_fdk.py).
_FDK_BLOCK = 16
# Rasteriser block working set (BLOCK_SUBSAMPLES x tissues x a few arrays).
_RASTER_BLOCK = 48 * MiB


@dataclasses.dataclass(frozen=True)
class CTMemoryPlan:
    """How a CT simulation is split, and what it is expected to need.

    Attributes:
        peak_bytes: estimated peak resident memory of the process, bytes.
        limit_bytes: the memory it may use (``max_memory``, or what the process
            holds now plus 85 % of what the machine has available), or ``None``
            when the machine's memory is unknown.
        n_views: views of the scan.
        views_per_chunk: views projected at once.
        slices_per_slab: grid slices rasterised at once.
        n_basis: independent attenuation curves projected per view.
    """

    peak_bytes: int
    limit_bytes: int | None
    n_views: int
    views_per_chunk: int
    slices_per_slab: int
    n_basis: int

    @property
    def fits(self) -> bool:
        """Whether the estimate is within the limit (true when it is unknown)."""
        return self.limit_bytes is None or self.peak_bytes <= self.limit_bytes

    @property
    def n_chunks(self) -> int:
        """Number of view chunks (the last one padded when they do not divide)."""
        return -(-self.n_views // self.views_per_chunk)


def format_bytes(n: float) -> str:
    """``n`` bytes as ``"1.23 GiB"`` or ``"456 MiB"``."""
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now (``MemAvailable`` of
    ``/proc/meminfo``, else free physical pages), or ``None`` if unknown."""
    found = _meminfo_available()
    if found is not None:
        return found
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _device_free() -> int | None:
    """Free bytes of the default accelerator, or ``None`` on the CPU (or when the
    device does not report its memory)."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _current_rss() -> int:
    """Resident memory of this process now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _profile_length(n: int) -> int:
    return -(-(n + 3) // 16) * 16


def _phases(shape, n_views, detector, n_basis, n_tissues, itemsize, c, s, raster):
    """Bytes held in each phase for ``c`` views per chunk, ``s`` slices per slab:
    ``(rasterise, project, reconstruct, chunk temporaries, slab temporaries)``."""
    nz, ny, nx = shape
    n_v, n_u = detector
    voxels, pixels = nz * ny * nx, n_v * n_u
    n = max(nx, ny)
    volume = voxels * itemsize
    maps = n_basis * volume
    labels = voxels
    slab = (n_tissues * s * ny * nx * itemsize + _RASTER_BLOCK) * raster
    # measured and corrected line integrals (the last chunk padded, then cropped)
    lines = (-(-n_views // c) * c + n_views) * pixels * itemsize
    # the projector's plane stack and the slice of the maps it is built from
    plane_stack = 2 * n * (n + 2) * _profile_length(nz) * itemsize + volume
    chunk = (n_basis + _CHUNK_TEMPS) * c * pixels * itemsize
    fft = 1 << math.ceil(math.log2(2 * n_u))
    # FDK: accumulator and its transpose, two views of detector profiles, and a
    # block of views being filtered (padded rows, their spectra, the result)
    block = min(_FDK_BLOCK, n_views)
    fdk = 2 * volume
    fdk += (2 * ny * nx * _profile_length(n_v) + 6 * block * n_v * fft) * itemsize
    # given fractions (not rasterised) are the caller's, alive throughout
    given = 0 if raster else n_tissues * volume
    rasterise = maps + labels + slab + given
    project = maps + labels + plane_stack + chunk + lines + given
    reconstruct = labels + lines + volume + fdk + given
    return rasterise, project, reconstruct, chunk, slab


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, max(cap, 1)) + 1) if n % d == 0)


def plan_ct_memory(
    shape: tuple[int, int, int],
    *,
    n_views: int,
    detector: tuple[int, int],
    n_basis: int,
    n_tissues: int,
    itemsize: int = 4,
    rasterise: bool = True,
    max_memory: int | None = None,
    check: bool = True,
) -> CTMemoryPlan:
    """Chunk sizes and peak-memory estimate of one CT simulation.

    Args:
        shape: ``(nz, ny, nx)`` reconstruction grid.
        n_views: views of the scan.
        detector: ``(n_v, n_u)`` detector pixels.
        n_basis: attenuation curves projected (the rank of the basis).
        n_tissues: tissue channels rasterised.
        itemsize: bytes per float (4, or 8 under ``JAX_ENABLE_X64``).
        rasterise: whether the phantom is rasterised here (not for given fractions).
        max_memory: bytes the process (on an accelerator: the device) may use at
            its peak; default what the process holds now plus 85 % of the memory
            available on the machine (on an accelerator: 85 % of the device's free
            memory).
        check: raise when even the smallest chunks do not fit (else return that
            plan, whose :attr:`~CTMemoryPlan.fits` is false).

    Returns:
        The :class:`CTMemoryPlan` with the largest chunks that fit (up to
        :data:`CHUNK_TARGET` of intermediates each).

    Raises:
        ValueError: even the smallest chunks would exceed the memory; the message
            names the estimate and the limit.
    """
    device_free = _device_free()
    if max_memory is not None:
        if not max_memory > 0:
            raise ValueError(f"max_memory must be > 0 bytes; got {max_memory!r}")
        limit = float(max_memory)
    elif device_free is not None:
        limit = SAFETY * device_free
    else:
        available = available_memory()
        limit = None if available is None else _current_rss() + SAFETY * available
    nz = shape[0]
    args = (shape, n_views, detector, n_basis, n_tissues, itemsize)
    # on an accelerator the arrays are on the device, the process baseline is not
    on_device = device_free is not None
    baseline = 0 if on_device else BASELINE + RASTER_COMPILE * rasterise

    def peak(c, s):
        return baseline + max(_phases(*args, c, s, rasterise)[:3])

    c = n_views
    while c > 1 and (
        _phases(*args, c, 1, rasterise)[3] > CHUNK_TARGET
        or (limit is not None and peak(c, 1) > limit)
    ):
        c = -(-c // 2)
    best = _divisor_at_most(n_views, c)
    c = best if 2 * best >= c else c  # pad the last chunk rather than tiny chunks
    s = nz
    while s > 1 and (
        _phases(*args, c, s, rasterise)[4] > CHUNK_TARGET
        or (limit is not None and peak(c, s) > limit)
    ):
        s = -(-s // 2)
    s = _divisor_at_most(nz, s)
    estimate = int(peak(c, s))
    if check and limit is not None and estimate > limit:
        raise ValueError(
            f"not enough memory: this CT (grid {tuple(shape)}, {n_views} views, "
            f"detector {detector[0]} x {detector[1]}) needs an estimated "
            f"{format_bytes(estimate)} at its peak even in the smallest chunks, "
            f"but {format_bytes(limit)} may be used"
            + (" (max_memory)" if max_memory is not None else " (available now)")
            + "; use a smaller grid, fewer views or larger voxels"
        )
    return CTMemoryPlan(
        peak_bytes=estimate,
        limit_bytes=None if limit is None else int(limit),
        n_views=int(n_views),
        views_per_chunk=int(c),
        slices_per_slab=int(s),
        n_basis=int(n_basis),
    )
