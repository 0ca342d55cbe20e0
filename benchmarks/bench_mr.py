"""Cine MR throughput, and a peer comparison with MRzero on the same bSSFP image.

Part 1 (jaxsim): a (12, 256, 256) short-axis cine volume with 8 Biot-Savart coils,
SNR 20, k-space crop from a 2x finer grid. Rows: the acquisition from cached tissue
fractions (what a population of many contrasts per anatomy costs), forward and
forward + gradient (w.r.t. PD, T1, T2 of every tissue and the flip angle), and the
whole simulate_cine call including the phantom rasterisation.

Part 2 (peer): the 64 x 64 single-slice, 4-tissue bSSFP steady-state image of
benchmarks/mrzero_peer.py, simulated by jaxsim and by MRzero (mrzerocore, PyTorch on
CPU, run in its own virtual environment given by $MRZERO_PYTHON, default
/work/mrzero-venv/bin/python; see README_mrzero.md). Both times and the agreement of
ROI means are reported; the row is skipped when the peer environment is absent.

    python benchmarks/bench_mr.py [--repeats 5] [--skip-volume] [--n-dummy 1600]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _timing import print_table, time_call, write_json
from mrzero_peer import make_input

from jaxsim.kernels import bssfp_transient
from jaxsim.mr import (
    Anatomy,
    BSSFPSequence,
    MRAcquisition,
    TissueProperties,
    acquire_cine,
    coil_sensitivities,
    default_tissue_properties,
    refine_in_plane,
    simulate_cine,
)
from jaxsim.phantoms import (
    TISSUE_INDEX,
    default_subject,
    label_map,
    short_axis_geometry,
    tissue_fractions,
)

HERE = Path(__file__).resolve().parent


def volume_rows(repeats: int) -> list[dict]:
    subject = default_subject("male")
    geometry = short_axis_geometry(
        subject, spacing=(8.0, 1.25, 1.25), shape=(12, 256, 256)
    )
    fine = refine_in_plane(geometry, 2)
    fractions = tissue_fractions(subject, fine)[None]
    myo = label_map(subject, geometry) == TISSUE_INDEX["lv_myocardium"]
    maps = coil_sensitivities(geometry, 8)
    props, seq = default_tissue_properties(1.5), BSSFPSequence()
    key = jax.random.key(0)

    # Arrays are arguments, not closed-over constants (XLA would fold them).
    acq = MRAcquisition(snr=20.0, n_coils=8, oversample=2)

    def forward(fractions, myo, maps, props, flip):
        anatomy = Anatomy(fractions, jnp.zeros(myo.shape, jnp.uint8)[None], myo, maps)
        return acquire_cine(key, anatomy, props, BSSFPSequence(flip=flip), acq)[0]

    def loss(props, flip, fractions, myo, maps):
        return jnp.mean(forward(fractions, myo, maps, props, flip))

    fwd = jax.jit(forward)
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    flip = jnp.asarray(seq.flip)
    rows = []
    for name, fn, args in (
        (
            "acquisition from fractions, forward",
            fwd,
            (fractions, myo, maps, props, flip),
        ),
        (
            "acquisition from fractions, forward+gradient",
            grad,
            (props, flip, fractions, myo, maps),
        ),
    ):
        t = time_call(fn, *args, repeats=repeats)
        rows.append({"case": name, **t, "volumes_per_s": 1.0 / t["median_s"]})

    def full():
        return simulate_cine(key, subject, geometry, acquisition=acq).image

    t = time_call(full, repeats=max(2, repeats // 2))
    rows.append(
        {
            "case": "simulate_cine incl. phantom + coil maps",
            **t,
            "volumes_per_s": 1.0 / t["median_s"],
        }
    )
    return rows


def _roi_means(image, labels, n_labels, erode):
    from scipy.ndimage import binary_erosion

    out = []
    for lab in range(1, n_labels):
        roi = binary_erosion(labels == lab, iterations=erode)
        out.append(float(np.abs(image)[roi].mean()))
    return np.array(out)


def peer_rows(repeats: int, n_dummy: int) -> tuple[list[dict], dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_mr_"))
    make_input(str(tmp / "in.npz"))
    data = np.load(tmp / "in.npz")
    labels = data["labels"]
    n_labels = int(labels.max()) + 1
    first = [np.argwhere(labels == k)[0] for k in range(1, n_labels)]
    table = TissueProperties(
        *(
            jnp.asarray([default] + [float(data[name][tuple(i)]) for i in first])
            for name, default in (("pd", 0.0), ("t1", 1.0), ("t2", 0.05))
        )
    )
    # One-hot fractions of the 4 tissues, uniform coil, no noise, no crop (the
    # matrix is the simulation grid); peer arrays are indexed [x, y].
    onehot = np.eye(n_labels, dtype=np.float32)[labels].transpose(2, 0, 1)
    fractions = jnp.asarray(onehot[None, :, None])
    seq = BSSFPSequence(
        tr=float(data["tr"]), te=float(data["te"]), flip=float(data["flip"])
    )
    maps = jnp.ones((1, 1, *labels.shape), jnp.complex64)
    myo = jnp.asarray(labels == 2)[None]

    def steady():
        labels = jnp.zeros(myo.shape, jnp.uint8)[None]
        anatomy = Anatomy(fractions, labels, myo, maps)
        acq = MRAcquisition(oversample=1)
        return acquire_cine(jax.random.key(0), anatomy, table, seq, acq)[0][0, 0]

    # The peer's sequence exactly: line ky is read after the alpha/2 preparation,
    # n_dummy dummies and the lines before it, so every k-space line carries the
    # transient signal of its own pulse index.
    ny = labels.shape[1]
    pulse = jnp.asarray(n_dummy + np.arange(ny))

    @jax.jit
    def transient():
        s = bssfp_transient(
            table.pd[:, None],
            table.t1[:, None],
            table.t2[:, None],
            seq.tr,
            seq.te,
            seq.flip,
            pulse[None, :],
        )  # (T, lines)
        images = jnp.einsum("tl,txy->lxy", s, fractions[0, :, 0].astype(s.dtype))
        k = jnp.fft.fftshift(
            jnp.fft.fft2(jnp.fft.ifftshift(images, axes=(1, 2))), axes=(1, 2)
        )
        kspace = k[jnp.arange(ny), :, jnp.arange(ny)].T  # [kx, ky]
        return jnp.fft.fftshift(jnp.fft.ifft2(jnp.fft.ifftshift(kspace)))

    cases = {"steady state": steady, f"transient, {n_dummy} dummies": transient}
    rows, means = [], {}
    for name, fn in cases.items():
        t = time_call(fn, repeats=max(repeats, 20))
        rows.append({"case": f"64x64 4-tissue bSSFP: jaxsim {name}", **t})
        means[name] = _roi_means(np.asarray(fn()), labels, n_labels, 2)
    info = {f"jaxsim_roi_means ({k})": v.tolist() for k, v in means.items()}

    python = os.environ.get("MRZERO_PYTHON", "/work/mrzero-venv/bin/python")
    if not Path(python).exists():
        print(f"MRzero peer skipped: no interpreter at {python} (set MRZERO_PYTHON)")
        return rows, info
    t0 = time.perf_counter()
    subprocess.run(
        [
            python,
            str(HERE / "mrzero_peer.py"),
            str(tmp / "in.npz"),
            str(tmp / "out.npz"),
            "--n-dummy",
            str(n_dummy),
        ],
        check=True,
    )
    wall = time.perf_counter() - t0
    peer = np.load(tmp / "out.npz")
    peer_time = float(peer["t_graph"]) + float(peer["t_sim"])
    theirs = _roi_means(peer["image"], labels, n_labels, 2)
    info["mrzero_roi_means"] = theirs.tolist()
    info["mrzero_wall_s"] = wall
    for row, (name, ours) in zip(rows, means.items(), strict=True):
        info[f"roi_rel_diff ({name})"] = ((ours - theirs) / theirs).tolist()
        row["speedup_vs_mrzero"] = peer_time / row["median_s"]
        row["max_roi_diff_pct"] = 100 * float(np.max(np.abs(ours - theirs) / theirs))
    rows.append(
        {
            "case": "64x64 4-tissue bSSFP: MRzero (graph + simulation)",
            "median_s": peer_time,
            "min_s": peer_time,
            "first_s": float(peer["t_total"]),
        }
    )
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-volume", action="store_true")
    parser.add_argument("--n-dummy", type=int, default=1600)
    args = parser.parse_args()
    rows = [] if args.skip_volume else volume_rows(args.repeats)
    peer, info = peer_rows(args.repeats, args.n_dummy)
    rows += peer
    print(f"\nbackend {jax.default_backend()}")
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("first_s", "first call [s]", ".3f"),
            ("median_s", "median [s]", ".5f"),
            ("min_s", "min [s]", ".5f"),
            ("volumes_per_s", "volumes/s", ".2f"),
            ("speedup_vs_mrzero", "x MRzero", ".0f"),
            ("max_roi_diff_pct", "max ROI diff [%]", ".2f"),
        ],
    )
    for key, value in info.items():
        if "roi" in key:
            print(f"{key}: " + ", ".join(f"{v:.4f}" for v in value))
    path = write_json("mr", {"rows": rows, "peer": info})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
