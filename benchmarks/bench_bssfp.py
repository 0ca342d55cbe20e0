"""Throughput of the exact bSSFP steady-state kernel on a cine-sized volume.

Rows (same run, same machine):
  * roofline: a trivial elementwise op reading the same inputs and writing the same
    complex output, i.e. the memory-bound floor for this data;
  * jaxsim forward (jit) and forward + gradient;
  * a vectorised NumPy float64 implementation of the same closed form.
Two layouts: per-voxel tissue parameters (pd, t1, t2 volumes) and a label volume
indexing a 12-tissue table. Writes benchmarks/results/bssfp.json.

    python benchmarks/bench_bssfp.py [--shape 12 256 256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
from _timing import print_table, time_call, write_json

from jaxsim.kernels import bssfp_signal

TR, TE, FLIP = 3.1e-3, 1.55e-3, math.radians(60.0)


def numpy_bssfp(pd, t1, t2, tr, te, flip, df=0.0, dphi=math.pi):
    """Float64 NumPy version of the same closed form (the textbook denominator)."""
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    beta = 2 * np.pi * df * tr + dphi
    ca, sa, cb, sb = np.cos(flip), np.sin(flip), np.cos(beta), np.sin(beta)
    denom = (1 - e1 * ca) * (1 - e2 * cb) - e2 * (e1 - ca) * (e2 - cb)
    scale = pd * (1 - e1) * sa / denom
    m = scale * e2 * sb + 1j * scale * (1 - e2 * cb)
    return m * np.exp(-te / t2) * np.exp(-2j * np.pi * df * te)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(12, 256, 256))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    shape = tuple(args.shape)
    n_vox = math.prod(shape)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, shape).astype(np.uint8)
    table_t1 = rng.uniform(0.3, 1.6, 12).astype(np.float32)
    table = {
        "pd": rng.uniform(0.1, 1.0, 12).astype(np.float32),
        "t1": table_t1,
        "t2": (table_t1 * rng.uniform(0.03, 0.2, 12)).astype(np.float32),
    }
    vol = {
        k: jnp.asarray(v[labels] * rng.uniform(0.95, 1.05, shape).astype(np.float32))
        for k, v in table.items()
    }
    vol["t2"] = jnp.minimum(vol["t2"], vol["t1"])
    df = jnp.asarray(rng.normal(0, 40, shape).astype(np.float32))

    # ---- per-voxel parameters
    roof_vox = jax.jit(lambda pd, t1, t2: jax.lax.complex(pd + t1, t2 - pd))
    fwd_vox = jax.jit(lambda pd, t1, t2: bssfp_signal(pd, t1, t2, TR, TE, FLIP))
    fwd_vox_b0 = jax.jit(
        lambda pd, t1, t2, df: bssfp_signal(pd, t1, t2, TR, TE, FLIP, df)
    )

    def loss_vox(pd, t1, t2):
        return jnp.sum(jnp.abs(bssfp_signal(pd, t1, t2, TR, TE, FLIP)) ** 2)

    grad_vox = jax.jit(jax.value_and_grad(loss_vox, argnums=(0, 1, 2)))
    np_vox = {k: np.asarray(v, np.float64) for k, v in vol.items()}

    # ---- label-indexed
    lab = jnp.asarray(labels)
    tpd, tt1, tt2 = (jnp.asarray(table[k]) for k in ("pd", "t1", "t2"))
    roof_lab = jax.jit(lambda lab, pd, t1, t2: jax.lax.complex(pd, t1)[lab])

    def label_signal(lab, pd, t1, t2):
        # The barrier keeps XLA from fusing the 12-entry table computation into the
        # gather, which would recompute the signal once per voxel.
        table = jax.lax.optimization_barrier(bssfp_signal(pd, t1, t2, TR, TE, FLIP))
        return table[lab]

    fwd_lab = jax.jit(label_signal)
    grad_lab = jax.jit(
        jax.value_and_grad(
            lambda pd, t1, t2, lab: jnp.sum(
                jnp.abs(label_signal(lab, pd, t1, t2)) ** 2
            ),
            argnums=(0, 1, 2),
        )
    )
    np_tab = {k: np.asarray(v, np.float64) for k, v in table.items()}

    cases = [
        ("per-voxel", "roofline (trivial elementwise)", roof_vox, tuple(vol.values())),
        ("per-voxel", "jaxsim forward", fwd_vox, tuple(vol.values())),
        ("per-voxel", "jaxsim forward, B0 map", fwd_vox_b0, (*vol.values(), df)),
        ("per-voxel", "jaxsim forward+gradient", grad_vox, tuple(vol.values())),
        (
            "per-voxel",
            "numpy float64 forward",
            lambda: numpy_bssfp(np_vox["pd"], np_vox["t1"], np_vox["t2"], TR, TE, FLIP),
            (),
        ),
        ("label-indexed", "roofline (gather)", roof_lab, (lab, tpd, tt1, tt2)),
        ("label-indexed", "jaxsim forward", fwd_lab, (lab, tpd, tt1, tt2)),
        ("label-indexed", "jaxsim forward+gradient", grad_lab, (tpd, tt1, tt2, lab)),
        (
            "label-indexed",
            "numpy float64 forward",
            lambda: numpy_bssfp(np_tab["pd"], np_tab["t1"], np_tab["t2"], TR, TE, FLIP)[
                labels
            ],
            (),
        ),
    ]
    rows = []
    for layout, name, fn, fargs in cases:
        t = time_call(fn, *fargs, repeats=args.repeats)
        rows.append(
            {
                "layout": layout,
                "case": name,
                **t,
                "mvox_per_s": n_vox / t["median_s"] / 1e6,
            }
        )
    for layout in ("per-voxel", "label-indexed"):
        roof = next(
            r for r in rows if r["layout"] == layout and "roofline" in r["case"]
        )
        for r in rows:
            if r["layout"] == layout:
                r["x_roofline"] = r["min_s"] / roof["min_s"]

    # Agreement of the float32 kernel with the float64 NumPy version.
    err = float(
        np.max(
            np.abs(
                np.asarray(fwd_vox(*vol.values()))
                - numpy_bssfp(np_vox["pd"], np_vox["t1"], np_vox["t2"], TR, TE, FLIP)
            )
        )
    )
    print(
        f"bSSFP steady state, volume {shape} = {n_vox} voxels, "
        f"backend {jax.default_backend()}; max |jaxsim f32 - numpy f64| = {err:.2e}"
    )
    print_table(
        rows,
        [
            ("layout", "layout", "s"),
            ("case", "case", "s"),
            ("first_s", "first call [s]", ".4f"),
            ("median_s", "median [s]", ".5f"),
            ("mvox_per_s", "Mvoxel/s", ".1f"),
            ("x_roofline", "min / roofline min", ".2f"),
        ],
    )
    path = write_json("bssfp", {"shape": shape, "rows": rows, "max_abs_err": err})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
