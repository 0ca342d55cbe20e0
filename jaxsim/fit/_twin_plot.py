"""Overlay figure of a patient twin against the real labels."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_twin"]

_COLOURS = {1: "tab:blue", 2: "tab:green", 3: "tab:red"}  # RV, MYO, LV


def _slices(labels, n):
    """Up to ``n`` slice indices spread over the labelled slices, base to apex."""
    z = np.nonzero(np.any(labels > 0, axis=(1, 2)))[0]
    if z.size == 0:
        return [labels.shape[0] // 2]
    picks = np.linspace(z.min(), z.max(), min(n, z.size) + 2)[1:-1]
    return sorted({int(round(p)) for p in picks})


def _crop(labels, pad=12):
    j, i = np.nonzero(np.any(labels > 0, axis=0))
    if j.size == 0:
        return slice(None), slice(None)
    ny, nx = labels.shape[1:]
    return (
        slice(max(0, j.min() - pad), min(ny, j.max() + 1 + pad)),
        slice(max(0, i.min() - pad), min(nx, i.max() + 1 + pad)),
    )


def plot_twin(
    result,
    real: dict,
    path: str | os.PathLike,
    *,
    images: dict | None = None,
    cine: np.ndarray | None = None,
    cine_slice: int | None = None,
    n_slices: int = 3,
) -> None:
    """Write a PNG: per phase, real (filled) vs twin (contours) on chosen slices,
    and a cine frame simulated from the twin.

    Args:
        result: a :class:`~jaxsim.fit.TwinResult`.
        real: ``{"ED": labels, "ES": labels}`` real ACDC label maps
            ``(nz, ny, nx)`` (the phases fitted).
        path: output PNG (overwritten; callers check first).
        images: optional ``{"ED": image, "ES": image}`` real images ``(nz, ny,
            nx)`` shown under the labels.
        cine: optional ``(ny, nx)`` simulated cine magnitude of the twin (slice
            ``cine_slice``, ED), shown in the last column.
        cine_slice: the slice index ``cine`` shows.
        n_slices: slices shown per phase.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    phases = list(real)
    picks = _slices(real[phases[0]], n_slices)
    rows, cols = _crop(np.maximum.reduce([real[p] for p in phases]) if phases else None)
    ncol = len(picks) + (cine is not None)
    fig, axes = plt.subplots(
        len(phases), ncol, figsize=(2.6 * ncol, 2.8 * len(phases)), dpi=90,
        squeeze=False,
    )  # fmt: skip
    fill = ListedColormap([(0, 0, 0, 0)] + [_COLOURS[v] for v in (1, 2, 3)])
    for r, phase in enumerate(phases):
        dice = result.dice[phase]
        for c, k in enumerate(picks):
            ax = axes[r][c]
            if images is not None and images.get(phase) is not None:
                ax.imshow(images[phase][k][rows, cols], cmap="gray")
            else:
                ax.imshow(np.zeros_like(real[phase][k][rows, cols]), cmap="gray")
            ax.imshow(
                real[phase][k][rows, cols], cmap=fill, vmin=-0.5, vmax=3.5, alpha=0.45
            )
            twin = result.labels[phase][k][rows, cols]
            for v, colour in _COLOURS.items():
                if np.any(twin == v):
                    ax.contour(twin == v, levels=[0.5], colors=colour, linewidths=1.2)
            ax.set_title(f"{phase} slice {k}", fontsize=8)
            ax.axis("off")
        axes[r][0].text(
            0.02, 0.02,
            " ".join(f"{n} {dice[n]:.2f}" for n in ("LV", "MYO", "RV")),
            transform=axes[r][0].transAxes, color="w", fontsize=7,
        )  # fmt: skip
        if cine is not None:
            ax = axes[r][-1]
            if r == 0:
                ax.imshow(np.asarray(cine)[rows, cols], cmap="gray")
                ax.set_title(f"twin cine, slice {cine_slice}", fontsize=8)
            ax.axis("off")
    fig.suptitle(
        "patient twin: real labels (filled) vs twin (contours); "
        "red LV, green MYO, blue RV",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
