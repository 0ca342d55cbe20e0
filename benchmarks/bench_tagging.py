"""Tagging throughput: tagged phantom frames/s and cine_to_tagged images/s.

Rows: ``acquire_tagged`` on precomputed fractions and ED positions for (12, 256, 256)
frames (forward, forward+backward), one end-to-end ``simulate_tagged`` frame
(rasterisation included), and ``cine_to_tagged`` on (12, 256, 256) volumes; each
against a NumPy float64 implementation of the same physics measured in the same run
(rotation products per pixel, fading closed form, einsum and FFT crop).

    python benchmarks/bench_tagging.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import print_table, time_call, write_json

from jaxsim.mr import (
    Anatomy,
    MRAcquisition,
    TaggingSequence,
    acquire_tagged,
    cine_to_tagged,
    default_tissue_properties,
    simulate_tagged,
)
from jaxsim.phantoms import TISSUES, default_subject, short_axis_geometry


# ------------------------------------------------------------------ NumPy baseline
def np_spamm(pos, spacing, flip, weights=(1, 3, 3, 1)):
    w = np.asarray(weights, float) / np.sum(weights)
    phase = 2 * np.pi * pos / spacing
    mx, my, mz = np.zeros_like(pos), np.zeros_like(pos), np.ones_like(pos)
    for k, wk in enumerate(w):
        if k:
            c, s = np.cos(phase), np.sin(phase)
            mx, my = mx * c + my * s, my * c - mx * s
        a = flip * wk
        my, mz = my * np.cos(a) + mz * np.sin(a), mz * np.cos(a) - my * np.sin(a)
    return mz


def np_fading(mz0, t, t1, m0, flip, tr):
    n = np.floor(t / tr)
    start = m0 + (mz0 - m0) * np.exp(-(t - n * tr) / t1)
    q = np.cos(flip) * np.exp(-tr / t1)
    return q**n * start + m0 * (1 - np.exp(-tr / t1)) * (1 - q**n) / (1 - q)


def np_cine_to_tagged(image, sp, spacing, flip, angle, t, t1=1.0, rf=0.1745, tr=4.5e-3):
    ny, nx = image.shape[-2:]
    y = ((np.arange(ny) - (ny - 1) / 2) * sp)[:, None]
    x = ((np.arange(nx) - (nx - 1) / 2) * sp)[None, :]
    ca, sa = math.cos(angle), math.sin(angle)
    mz = np_spamm(x * ca + y * sa, spacing, flip) * np_spamm(
        -x * sa + y * ca, spacing, flip
    )
    mz = np_fading(mz, t, t1, 1.0, rf, tr)
    peak = image.max()
    return peak * np.sqrt(image / peak) * mz


def np_tagged_frames(fractions, u, v, tissue, times, seq):
    pattern = np_spamm(u, 8.0, math.pi / 2) * np_spamm(v, 8.0, math.pi / 2)
    pd, t1, t2 = (np.asarray(a, float) for a in (tissue.pd, tissue.t1, tissue.t2))
    t = np.asarray(times)[:, None]
    b = np_fading(0.0, t, t1, pd, seq["flip"], seq["tr"])
    a = np_fading(pd, t, t1, pd, seq["flip"], seq["tr"]) - b
    readout = math.sin(seq["flip"]) * np.exp(-seq["te"] / t2)
    img = pattern * np.einsum("pt,ptzyx->pzyx", readout * a, fractions)
    img += np.einsum("pt,ptzyx->pzyx", readout * b, fractions)
    k = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1))), axes=(-2, -1)
    )
    return np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)))))


# ------------------------------------------------------------------ benchmark
def bench_frames(shape, n_frames, rows):
    rng = np.random.default_rng(0)
    nt = len(TISSUES)
    fr = rng.uniform(size=(n_frames, nt, *shape)).astype(np.float32)
    fr /= fr.sum(axis=1, keepdims=True)
    c = (np.arange(shape[-1]) - shape[-1] / 2) * 1.25
    u = np.broadcast_to(c[None, None, None, :], (n_frames, *shape)).astype(np.float32)
    v = np.broadcast_to(c[None, None, :, None], (n_frames, *shape)).astype(np.float32)
    tissue = default_tissue_properties()
    seq = TaggingSequence()
    times = jnp.linspace(0.0, 0.3, n_frames)
    maps = jnp.ones((1, *shape), jnp.complex64)
    myo = jnp.ones(shape, bool)
    data = (jnp.asarray(fr), (jnp.asarray(u), jnp.asarray(v)))

    def fwd(flip, fractions, uv):  # arrays as arguments: no constant folding
        s = TaggingSequence(flip_total=flip)
        key = jax.random.key(0)
        labels = jnp.zeros((n_frames, *shape), jnp.uint8)
        anatomy = Anatomy(fractions, labels, myo, maps)
        acq = MRAcquisition(snr=20.0, oversample=1)
        return acquire_tagged(key, anatomy, uv, tissue, s, times, acq)[0]

    grad = jax.jit(jax.grad(lambda f, *a: jnp.sum(fwd(f, *a))))
    label = f"{n_frames}x{shape}"
    for name, fn in (
        ("acquire_tagged fwd", jax.jit(fwd)),
        ("acquire_tagged fwd+bwd", grad),
    ):
        t = time_call(fn, jnp.asarray(math.pi / 2), *data, repeats=3)
        rows.append(
            {
                "case": name,
                "size": label,
                **t,
                "per_s": n_frames / t["median_s"],
                "unit": "frames/s",
            }
        )
    sd = dict(flip=float(seq.readout_flip), tr=float(seq.tr), te=float(seq.te))
    t = time_call(
        lambda: np_tagged_frames(fr.astype(np.float64), u, v, tissue, times, sd),
        repeats=2,
        warmup=False,
    )
    rows.append(
        {
            "case": "NumPy float64 baseline",
            "size": label,
            **t,
            "per_s": n_frames / t["median_s"],
            "unit": "frames/s",
        }
    )


def bench_end_to_end(shape, rows):
    subject = default_subject()
    geometry = short_axis_geometry(subject, shape=shape)
    acq = MRAcquisition(oversample=1)
    t0 = time.perf_counter()
    r = simulate_tagged(jax.random.key(0), subject, geometry, acquisition=acq)
    r.image.block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = simulate_tagged(jax.random.key(1), subject, geometry, acquisition=acq)
    r.image.block_until_ready()
    steady = time.perf_counter() - t0
    rows.append(
        {
            "case": "simulate_tagged end to end (1 frame)",
            "size": str(shape),
            "first_s": first,
            "median_s": steady,
            "min_s": steady,
            "per_s": 1.0 / steady,
            "unit": "frames/s",
        }
    )


def bench_cine_to_tagged(shape, rows):
    image = np.random.default_rng(1).uniform(size=shape).astype(np.float32)
    kw = dict(pixel_spacing=1.5, tag_spacing=7.5, flip_total=math.radians(70))
    fwd = jax.jit(lambda im, t: cine_to_tagged(im, angle=0.5, frame_times=t, **kw))
    grad = jax.jit(jax.grad(lambda im, t: jnp.sum(fwd(im, t))))
    n = shape[0]
    for name, fn in (("cine_to_tagged fwd", fwd), ("cine_to_tagged fwd+bwd", grad)):
        t = time_call(fn, jnp.asarray(image), jnp.asarray(0.2))
        rows.append(
            {
                "case": name,
                "size": str(shape),
                **t,
                "per_s": n / t["median_s"],
                "unit": "images/s",
            }
        )
    im64 = image.astype(np.float64)
    t = time_call(
        lambda: np_cine_to_tagged(im64, 1.5, 7.5, math.radians(70), 0.5, 0.2),
        repeats=3,
        warmup=False,
    )
    rows.append(
        {
            "case": "NumPy float64 baseline",
            "size": str(shape),
            **t,
            "per_s": n / t["median_s"],
            "unit": "images/s",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    shape = (2, 64, 64) if args.quick else (12, 256, 256)
    rows: list[dict] = []
    bench_cine_to_tagged(shape, rows)
    bench_frames(shape, 2, rows)
    bench_end_to_end(shape, rows)
    path = write_json("tagging", {"shape": shape, "rows": rows})
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("size", "size", "s"),
            ("first_s", "first [s]", ".3f"),
            ("median_s", "median [s]", ".4f"),
            ("per_s", "throughput", ".1f"),
            ("unit", "unit", "s"),
        ],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
