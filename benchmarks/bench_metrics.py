"""Segmentation metrics and losses on a cardiac-sized volume (10 x 256 x 256).

Metrics (NumPy): HD95 and ASSD per label in both conventions on an ACDC-like
label map (RV, myocardium, LV ellipsoids) against a shifted copy, and on one large
box label (the worst case: the bounding box is most of the volume). Baseline in
the same run, where scipy is installed: the MONAI convention computed with
``scipy.ndimage`` (erosion + ``distance_transform_edt``), which is what MONAI runs.
Losses (JAX): compile time apart from the steady state, forward and
forward+backward, for ``dice_ce_loss`` and ``dice_ce_shape_loss`` on a batch of 2.

    python benchmarks/bench_metrics.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import print_table, time_call, write_json

from jaxsim.losses import dice_ce_loss, dice_ce_shape_loss
from jaxsim.metrics import average_surface_distance, hausdorff_distance

SHAPE, SPACING = (10, 256, 256), (10.0, 1.25, 1.25)


def acdc_like() -> np.ndarray:
    g = np.indices(SHAPE).astype(float)

    def ell(c, axes):
        return sum(((g[i] - c[i]) * SPACING[i] / axes[i]) ** 2 for i in range(3)) <= 1

    lv = ell((5, 128, 120), (45, 25, 25))
    outer = ell((5, 128, 120), (50, 33, 33))
    rv = ell((5, 128, 170), (45, 30, 22)) & ~outer
    labels = np.zeros(SHAPE, np.uint8)
    labels[rv], labels[outer & ~lv], labels[lv] = 1, 2, 3
    return labels


def big_box() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, 20:236, 10:246] = 1
    return labels


def scipy_monai_hd95(pred, target):
    import scipy.ndimage as ndi

    out = {}
    for v in np.unique(target[target > 0]):
        a, b = pred == v, target == v
        ea, eb = a & ~ndi.binary_erosion(a), b & ~ndi.binary_erosion(b)
        d_ab = ndi.distance_transform_edt(~eb, sampling=SPACING)[ea]
        d_ba = ndi.distance_transform_edt(~ea, sampling=SPACING)[eb]
        out[int(v)] = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    return out


def _calls(pred, target) -> list[tuple]:
    kw = {"spacing": SPACING}
    calls = [
        (f"{name} {c}", functools.partial(fn, pred, target, convention=c, **kw))
        for name, fn in (
            ("hd95", hausdorff_distance),
            ("assd", average_surface_distance),
        )
        for c in ("deepmind", "monai")
    ]
    if importlib.util.find_spec("scipy") is not None:
        calls.append(
            (
                "hd95 monai via scipy (baseline)",
                functools.partial(scipy_monai_hd95, pred, target),
            )
        )
    return calls


def metric_rows(repeats: int) -> list[dict]:
    rows = []
    for name, target in (("acdc-like", acdc_like()), ("large box", big_box())):
        pred = np.roll(target, (0, 3, -2), axis=(0, 1, 2))
        n_labels = len(np.unique(target)) - 1
        for what, fn in _calls(pred, target):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                value = fn()
                times.append(time.perf_counter() - t0)
            median = float(np.median(times))
            rows.append(
                {
                    "case": name,
                    "metric": what,
                    "labels": n_labels,
                    "median_s": median,
                    "per_label_s": median / n_labels,
                    "value": round(float(max(value.values())), 3),
                }
            )
    return rows


def loss_rows(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    labels = jnp.asarray(np.stack([acdc_like(), acdc_like()]).astype(np.int32))
    logits = jnp.asarray(rng.normal(size=(2, *SHAPE, 4)).astype(np.float32))
    rows = []
    for name, loss in (
        ("dice_ce_loss", dice_ce_loss),
        ("dice_ce_shape_loss", lambda z, y: dice_ce_shape_loss(z, y, spacing=SPACING)),
    ):
        fwd = jax.jit(loss)
        bwd = jax.jit(jax.value_and_grad(loss))
        for mode, fn in (("forward", fwd), ("forward+backward", bwd)):
            t = time_call(fn, logits, labels, repeats=repeats)
            rows.append({"loss": name, "mode": mode, **t})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    metrics = metric_rows(args.repeats)
    print_table(
        metrics,
        [
            ("case", "case", "<10"),
            ("metric", "metric", "<32"),
            ("labels", "labels", ">6"),
            ("median_s", "median s", ">9.3f"),
            ("per_label_s", "s/label", ">8.3f"),
            ("value", "max mm", ">7"),
        ],
    )
    losses = loss_rows(args.repeats)
    print_table(
        losses,
        [
            ("loss", "loss", "<20"),
            ("mode", "mode", "<17"),
            ("first_s", "first s", ">8.2f"),
            ("median_s", "median s", ">9.3f"),
        ],
    )
    print(write_json("bench_metrics", {"metrics": metrics, "losses": losses}))


if __name__ == "__main__":
    main()
