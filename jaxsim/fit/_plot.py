"""Figure of real vs simulated class histograms, before and after a fit."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_histograms"]


def plot_histograms(result, path: str | os.PathLike, *, bins: int = 48) -> None:
    """Write a PNG: one panel per class, real vs simulated before and after.

    Args:
        result: a :class:`~jaxsim.fit.FitResult`.
        path: output PNG path (overwritten; callers check first).
        bins: histogram bins per panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    class_map = np.asarray(result.data.class_map)
    n = len(result.classes)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), dpi=110, squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], result.classes, strict=True)):
        inside = class_map == k
        real = result.real[inside]
        before, after = result.before[inside], result.after[inside]
        lo = min(real.min(), after.min(), np.percentile(before, 1))
        hi = max(real.max(), after.max(), np.percentile(before, 99))
        edges = np.linspace(lo, hi, bins + 1)
        m = result.metrics[name]
        ax.hist(real, edges, density=True, color="0.7", label="real")
        ax.hist(
            before,
            edges,
            density=True,
            histtype="step",
            lw=1.4,
            color="tab:orange",
            label=f"default (KS {m['ks_before']:.2f})",
        )
        ax.hist(
            after,
            edges,
            density=True,
            histtype="step",
            lw=1.6,
            color="tab:blue",
            label=f"fitted (KS {m['ks_after']:.2f})",
        )
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("intensity (image units)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
