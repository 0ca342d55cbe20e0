"""MRzero peer for ``bench_mr.py``: a 2D Cartesian bSSFP image simulated with MRzero.

Runs ONLY under the separate MRzero virtual environment (see README_mrzero.md); it
imports neither jax nor jaxsim, and MRzero is never a jaxsim dependency.

Input: an ``.npz`` with 2D float arrays ``pd``, ``t1``, ``t2`` (seconds), shape
(nx, ny) (64 x 64 for the benchmark); optional scalars ``tr``, ``te`` (s), ``flip``
(rad), ``fov_mm``, ``n_dummy`` and an optional int ``labels`` map with
``label_names`` (used only for the ROI report). Command-line options override the
scalars. Output: an ``.npz`` with the complex image ``image`` (same axes as ``pd``,
physical units: transverse magnetization x PD at TE, i.e. directly comparable with
``jaxsim.kernels.bssfp_signal``), its magnitude, the k-space and the wall times.

Sequence (all pulses instantaneous, B0 = 0, B1 = 1, one coil of unit sensitivity,
no T2', no diffusion):

  alpha/2 (phase pi) -- TR/2 -- [alpha (phase 0, pi, 0, ...) -- TR]  x (n_dummy + ny)

Each TR: prephaser (kx -> -nx/2 - 1, ky -> line) | nx readout events of one
k-space step each (the sample at the end of event j has kx = j - nx/2, so kx = 0 is
sampled exactly at TE) | rewinder (back to k = 0). Every TR is balanced. The
``n_dummy`` TRs have the same timing and zero phase encoding and no ADC; then the
``ny`` lines are acquired in linear order ky = -ny/2 .. ny/2 - 1. The ADC phase
follows the RF phase, so every line has the same steady-state phase.

Reconstruction: the sampled k-space is a full Cartesian grid, so the image is an
inverse 2D DFT (``numpy.fft.ifft2``, whose 1/(nx ny) factor is exactly the
normalisation that maps MRzero's signal -- the sum over voxels of PD x transverse
magnetization x exp(-2 pi i k.x) -- back to per-voxel values). No fitted scale.

    /work/mrzero-venv/bin/python benchmarks/mrzero_peer.py --make-input in.npz
    /work/mrzero-venv/bin/python benchmarks/mrzero_peer.py in.npz out.npz --n-dummy 1600
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

# Benchmark phantom: (name, PD, T1 [s], T2 [s]); label 0 is background.
TISSUES = (
    ("blood", 0.95, 1.441, 0.290),
    ("myocardium", 0.80, 0.950, 0.052),
    ("fat", 0.70, 0.343, 0.058),
    ("liver", 0.90, 0.586, 0.046),
)
DEFAULTS = {
    "tr": 3.1e-3,
    "te": 1.55e-3,
    "flip": math.radians(60.0),
    "fov_mm": 200.0,
    "n_dummy": 1600,
}


def make_input(path: str, n: int = 64) -> None:
    """Write the 4-tissue benchmark phantom (rectangular ROIs) and sequence scalars."""
    if n % 16:
        raise ValueError("phantom size must be a multiple of 16")
    labels = np.zeros((n, n), np.int32)
    u = n / 64  # layout below is in units of a 64-voxel grid

    def box(x0, x1, y0, y1, value):
        labels[round(x0 * u) : round(x1 * u), round(y0 * u) : round(y1 * u)] = value

    box(4, 60, 4, 60, 3)  # fat frame (outer rectangle) ...
    box(12, 52, 12, 52, 0)  # ... with an empty interior
    box(14, 50, 14, 26, 4)  # liver block
    box(18, 46, 30, 50, 2)  # myocardium (square ring around the pool)
    box(24, 40, 36, 44, 1)  # blood pool
    pd = np.zeros((n, n))
    t1 = np.ones((n, n))
    t2 = np.ones((n, n))
    for i, (_, p, a, b) in enumerate(TISSUES, start=1):
        pd[labels == i], t1[labels == i], t2[labels == i] = p, a, b
    np.savez(
        path,
        pd=pd,
        t1=t1,
        t2=t2,
        labels=labels,
        label_names=np.array(["background"] + [t[0] for t in TISSUES]),
        **{k: np.float64(v) for k, v in DEFAULTS.items()},
    )
    print(f"wrote {path}: {n}x{n} phantom, tissues {[t[0] for t in TISSUES]}")


def exact_bssfp(pd, t1, t2, tr, te, flip):
    """On-resonance, alternating-phase bSSFP steady state at TE (hard pulses).

    Same closed form as ``jaxsim.kernels.bssfp_signal`` (|.|) with df = 0, beta = pi.
    """
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    ca, sa = np.cos(flip), np.sin(flip)
    denom = (1 - e1 * ca) * (1 + e2) - e2 * (e1 - ca) * (1 + e2)
    return pd * (1 - e1) * sa * (1 + e2) / denom * np.exp(-te / t2)


def bloch_centre_line(pd, t1, t2, tr, te, flip, n_pulses):
    """|M_xy| at TE after the n-th alpha pulse of this sequence (hard pulses, B0 = 0).

    Discrete Bloch recursion of the alpha/2 - TR/2 prep and the alternating train:
    the transient reference for the k-space centre line (scalars only).
    """

    def rot(angle, phase, m):  # rotation about (cos phase, sin phase, 0)
        c, s, ux, uy = (
            math.cos(angle),
            math.sin(angle),
            math.cos(phase),
            math.sin(phase),
        )
        r = np.array(
            [
                [c + ux * ux * (1 - c), ux * uy * (1 - c), uy * s],
                [ux * uy * (1 - c), c + uy * uy * (1 - c), -ux * s],
                [-uy * s, ux * s, c],
            ]
        )
        return r @ m

    def relax(m, t):
        e2, e1 = math.exp(-t / t2), math.exp(-t / t1)
        return np.array([m[0] * e2, m[1] * e2, 1 + (m[2] - 1) * e1])

    m = relax(rot(flip / 2, math.pi, np.array([0.0, 0.0, 1.0])), tr / 2)
    for i in range(n_pulses):
        m = relax(rot(flip, math.pi * (i % 2), m), tr)
    m = relax(rot(flip, math.pi * (n_pulses % 2), m), te)
    return pd * math.hypot(m[0], m[1])


def build_sequence(mr0, torch, nx, ny, tr, te, flip, n_dummy, dwell):
    """The balanced Cartesian bSSFP sequence described in the module docstring."""
    t_pre = te - (nx // 2 + 1) * dwell  # prephaser: k-centre sample exactly at TE
    t_rew = tr - te - (nx // 2 - 1) * dwell
    if t_pre <= 0 or t_rew <= 0:
        raise ValueError(f"dwell {dwell} s too long for TR {tr} s / TE {te} s")
    seq = mr0.Sequence()

    prep = seq.new_rep(1)  # alpha/2 with phase opposite to the first alpha, then TR/2
    prep.pulse.usage = mr0.PulseUsage.EXCIT
    prep.pulse.angle = torch.tensor(flip / 2)
    prep.pulse.phase = torch.tensor(math.pi)
    prep.event_time[:] = tr / 2

    lines = [None] * n_dummy + list(range(-(ny // 2), ny - ny // 2))
    for i, line in enumerate(lines):
        # Dummy TRs lump the nx readout steps into one event: identical gradient
        # moments and timing, no ADC, and the main pass costs events x voxels per
        # state, so this keeps long dummy trains cheap.
        n_read = 1 if line is None else nx
        rep = seq.new_rep(n_read + 2)
        rep.pulse.usage = mr0.PulseUsage.EXCIT
        rep.pulse.angle = torch.tensor(flip)
        phase = math.pi * (i % 2)
        rep.pulse.phase = torch.tensor(phase)
        ky = 0.0 if line is None else float(line)
        rep.event_time[0] = t_pre
        rep.gradm[0, 0], rep.gradm[0, 1] = -(nx // 2) - 1.0, ky
        rep.event_time[1 : n_read + 1] = nx * dwell / n_read
        rep.gradm[1 : n_read + 1, 0] = nx / n_read
        rep.event_time[-1] = t_rew
        rep.gradm[-1, 0], rep.gradm[-1, 1] = -(nx - nx // 2 - 1.0), -ky
        if line is not None:
            rep.adc_usage[1 : nx + 1] = 1
            # receiver follows the RF phase; pi/2 turns -i sin(alpha) into +real
            rep.adc_phase[1 : nx + 1] = math.pi / 2 - phase
    return seq, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", help=".npz with pd, t1, t2 maps")
    parser.add_argument("output", nargs="?", help="output .npz")
    parser.add_argument(
        "--make-input", metavar="PATH", help="write the benchmark phantom"
    )
    parser.add_argument(
        "--size", type=int, default=64, help="phantom size for --make-input"
    )
    parser.add_argument("--tr", type=float, help="repetition time [s]")
    parser.add_argument("--te", type=float, help="echo time [s]")
    parser.add_argument("--flip", type=float, help="flip angle [rad]")
    parser.add_argument("--fov-mm", type=float, help="field of view [mm]")
    parser.add_argument("--n-dummy", type=int, help="dummy TRs after the alpha/2 prep")
    parser.add_argument("--dwell", type=float, default=20e-6, help="ADC dwell [s]")
    parser.add_argument("--slice-mm", type=float, default=8.0, help="voxel depth [mm]")
    parser.add_argument("--max-state-count", type=int, default=200)
    parser.add_argument("--min-state-mag", type=float, default=1e-4)
    parser.add_argument(
        "--min-emitted-signal",
        type=float,
        default=0.05,
        help="MRzero main-pass threshold (its default is 0.01)",
    )
    parser.add_argument(
        "--min-latent-signal",
        type=float,
        default=0.05,
        help="MRzero main-pass threshold (its default is 0.01)",
    )
    parser.add_argument(
        "--mean-graph",
        action="store_true",
        help="prepass on the mean tissue only (MRzero's default)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: default)"
    )
    parser.add_argument("--erode", type=int, default=2, help="ROI erosion in voxels")
    args = parser.parse_args()

    if args.make_input:
        make_input(args.make_input, args.size)
        if not args.input:
            return
    if not (args.input and args.output):
        parser.error("input and output paths are required")

    t_start = time.perf_counter()
    import MRzeroCore as mr0
    import torch

    t_import = time.perf_counter() - t_start
    if args.threads:
        torch.set_num_threads(args.threads)

    with np.load(args.input) as f:
        data = dict(f)
    pd, t1, t2 = (np.asarray(data[k], np.float64) for k in ("pd", "t1", "t2"))
    if pd.ndim != 2 or not pd.shape == t1.shape == t2.shape:
        raise ValueError("pd, t1, t2 must be 2D arrays of equal shape")
    par = {}
    for key in DEFAULTS:
        cli = getattr(args, key)
        par[key] = (
            cli
            if cli is not None
            else (data[key].item() if key in data else DEFAULTS[key])
        )
    tr, te, flip, fov_mm = (float(par[k]) for k in ("tr", "te", "flip", "fov_mm"))
    n_dummy = int(par["n_dummy"])
    nx, ny = pd.shape

    # ---- phantom: (nx, ny, 1) grid, FOV x FOV x slice, B0 = 0, B1 = 1, one coil
    t0 = time.perf_counter()
    shape3 = (nx, ny, 1)
    affine = torch.eye(3, 4)
    affine[0, 0], affine[1, 1], affine[2, 2] = fov_mm / nx, fov_mm / ny, args.slice_mm
    affine[:, 3] = torch.tensor([-fov_mm / 2, -fov_mm / 2, -args.slice_mm / 2])
    phantom = mr0.VoxelGridPhantom(
        PD=torch.tensor(pd.reshape(shape3)),
        T1=torch.tensor(t1.reshape(shape3)),
        T2=torch.tensor(t2.reshape(shape3)),
        T2dash=torch.full(shape3, 1e9),  # no T2' (static dephasing) at all
        D=torch.zeros(shape3),  # no diffusion
        B0=torch.zeros(shape3),
        B1=torch.ones((1, *shape3)),
        coil_sens=torch.ones((1, *shape3)),
        affine=affine,
    )
    sim_data = phantom.build()
    seq, lines = build_sequence(mr0, torch, nx, ny, tr, te, flip, n_dummy, args.dwell)
    t_setup = time.perf_counter() - t0

    # The prepass runs on one tissue; probe every distinct (T1, T2) so the graph
    # keeps the states each tissue needs (mean-only graphs miss some).
    fg = pd > 1e-6
    pairs = np.unique(np.stack([t1[fg], t2[fg]], 1), axis=0)
    tissues = None
    if 1 < len(pairs) <= 16 and not args.mean_graph:
        tissues = {
            f"t{i}": {"T1": a, "T2": b, "T2dash": 1e9, "D": 0.0}
            for i, (a, b) in enumerate(pairs)
        }

    t0 = time.perf_counter()
    graph = mr0.compute_graph(
        seq, sim_data, args.max_state_count, args.min_state_mag, tissues=tissues
    )
    t_graph = time.perf_counter() - t0

    t0 = time.perf_counter()
    signal = mr0.execute_graph(
        graph,
        seq,
        sim_data,
        args.min_emitted_signal,
        args.min_latent_signal,
        print_progress=False,
    )
    t_sim = time.perf_counter() - t0

    # ---- reconstruction: samples come line by line, kx = -nx/2 .. nx/2-1
    kspace = signal[:, 0].numpy().astype(np.complex128).reshape(ny, nx).T  # [kx, ky]
    traj = seq.get_kspace()[:, :2].numpy().reshape(ny, nx, 2)
    assert np.allclose(traj[..., 0].T, np.arange(nx)[:, None] - nx // 2)
    assert np.allclose(traj[..., 1].T, np.arange(ny)[None, :] - ny // 2)
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace)))
    t_total = time.perf_counter() - t_start

    n_states = sum(len(rep) for rep in graph)
    out = dict(
        image=image.astype(np.complex64),
        magnitude=np.abs(image).astype(np.float32),
        kspace=kspace.astype(np.complex64),
        t_setup=t_setup,
        t_graph=t_graph,
        t_sim=t_sim,
        t_import=t_import,
        t_total=t_total,
        tr=tr,
        te=te,
        flip=flip,
        fov_mm=fov_mm,
        n_dummy=n_dummy,
        n_reps=len(seq),
        n_states=n_states,
        mrzero_version=mr0.__version__,
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
    )
    np.savez(args.output, **out)

    print(
        f"MRzero {mr0.__version__} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads): {nx}x{ny} bSSFP, TR {tr * 1e3:.3g} ms, "
        f"TE {te * 1e3:.3g} ms, flip {math.degrees(flip):.4g} deg, FOV {fov_mm:g} mm, "
        f"alpha/2 prep + {n_dummy} dummies + {ny} lines = {len(seq)} reps"
    )
    print(
        f"  graph {t_graph:.2f} s ({n_states} states), simulation {t_sim:.2f} s, "
        f"setup {t_setup:.2f} s, total incl. import {t_total:.2f} s"
    )
    if "labels" in data:
        from scipy.ndimage import binary_erosion

        labels = data["labels"]
        names = data.get("label_names")
        centre = n_dummy + ny // 2  # alpha pulses before the ky = 0 line
        print(
            f"  {'ROI':<12}{'voxels':>7}{'MRzero':>10}{'steady':>10}{'rel.err':>10}"
            f"{'transient':>11}{'rel.err':>10}"
        )
        for lab in np.unique(labels):
            if lab == 0:
                continue
            roi = binary_erosion(labels == lab, iterations=args.erode)
            mean = np.abs(image[roi]).mean()
            ref = exact_bssfp(pd[roi], t1[roi], t2[roi], tr, te, flip).mean()
            trans = bloch_centre_line(
                pd[roi].mean(), t1[roi].mean(), t2[roi].mean(), tr, te, flip, centre
            )
            name = str(names[lab]) if names is not None else str(lab)
            print(
                f"  {name:<12}{roi.sum():>7}{mean:>10.5f}{ref:>10.5f}"
                f"{(mean - ref) / ref:>+10.2e}{trans:>11.5f}"
                f"{(mean - trans) / trans:>+10.2e}"
            )
        bg = binary_erosion(labels == 0, iterations=args.erode)
        print(f"  background max |image| {np.abs(image[bg]).max():.2e}")


if __name__ == "__main__":
    main()
