"""Cone-beam benchmark: jaxsim's Joseph pair and FDK against RTK on this CPU.

Problem: 128^3 volume (1 mm), 180 views over 2 pi, 128 x 128 detector (2 mm),
dso 600 mm, dsd 1200 mm. jaxsim runs here; RTK (``itk-rtk``, Joseph forward and
back projectors, FDK) runs in the same run in a separate Python that has ``itk-rtk``
installed (it is not a project dependency), exchanging arrays through ``.npy`` files.

    python benchmarks/bench_conebeam.py --rtk-python /work/ctpeer-venv/bin/python

Reports the first call (compile + run) apart from steady state (minimum of repeats,
after ``block_until_ready``) of the forward projection, backprojection, FDK, the
gradient of a projection loss (forward + hand-written adjoint) and the forward-mode
JVP, the projection agreement with RTK, and the peak resident memory of a
256^3 x 360-view forward + backprojection in a fresh process. Writes
``benchmarks/results/conebeam.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DSO, DSD = 600.0, 1200.0


def problem(n: int, n_angles: int, n_det: int):
    """Geometry parameters and an ellipsoid phantom volume (float32, 1/mm)."""
    pitch = 2.0 * 128 / n_det
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    c = np.arange(n) - (n - 1) / 2
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij")
    s = n / 128
    vol = 0.02 * (
        ((xx / (50 * s)) ** 2 + (yy / (40 * s)) ** 2 + (zz / (55 * s)) ** 2) <= 1
    )
    vol += 0.01 * (
        (
            ((xx - 12 * s) / (15 * s)) ** 2
            + (yy / (10 * s)) ** 2
            + ((zz + 8 * s) / (20 * s)) ** 2
        )
        <= 1
    )
    return (
        dict(n=n, n_angles=n_angles, n_det=n_det, pitch=pitch),
        angles,
        vol.astype(np.float32),
    )


# ---------------------------------------------------------------- RTK worker
def rtk_worker(workdir: Path, repeats: int) -> None:
    """Run RTK on ``workdir/volume.npy``; write projections and timings."""
    import itk
    from itk import RTK as rtk

    meta = json.loads((workdir / "meta.json").read_text())
    vol = np.load(workdir / "volume.npy")  # (nz, ny, nx)
    n, n_det, pitch = meta["n"], meta["n_det"], meta["pitch"]
    angles = np.load(workdir / "angles.npy")
    image = itk.Image[itk.F, 3]
    geometry = rtk.ThreeDCircularProjectionGeometry.New()
    for a in np.degrees(angles):
        geometry.AddProjection(DSO, DSD, float(a), 0.0, 0.0)
    # jaxsim world (x, y, z) -> RTK (x, y, z) = (y, z, x): RTK rotates about its y
    # axis with the source at (sin a, 0, cos a) * sid, detector u = RTK x, v = RTK y.
    rtk_vol = itk.image_from_array(np.ascontiguousarray(np.transpose(vol, (2, 0, 1))))
    rtk_vol.SetSpacing([1.0, 1.0, 1.0])
    rtk_vol.SetOrigin([-(n - 1) / 2] * 3)
    proj_src = rtk.ConstantImageSource[image].New()
    proj_src.SetOrigin([-(n_det - 1) / 2 * pitch] * 2 + [0.0])
    proj_src.SetSpacing([pitch, pitch, 1.0])
    proj_src.SetSize([n_det, n_det, len(angles)])
    vol_src = rtk.ConstantImageSource[image].New()
    vol_src.SetOrigin([-(n - 1) / 2] * 3)
    vol_src.SetSpacing([1.0] * 3)
    vol_src.SetSize([n] * 3)

    def timed(make):
        best, out = np.inf, None
        for _ in range(repeats):
            f = make()
            t = time.perf_counter()
            f.Update()
            best = min(best, time.perf_counter() - t)
            out = f.GetOutput()
        return best, out

    def forward():
        f = rtk.JosephForwardProjectionImageFilter[image, image].New()
        f.SetInput(0, proj_src.GetOutput())
        f.SetInput(1, rtk_vol)
        f.SetGeometry(geometry)
        return f

    t_fwd, proj = timed(forward)
    projections = itk.array_from_image(proj)  # (A, n_v, n_u)

    def back():
        f = rtk.JosephBackProjectionImageFilter[image, image].New()
        f.SetInput(0, vol_src.GetOutput())
        f.SetInput(1, proj)
        f.SetGeometry(geometry)
        return f

    t_bp, _ = timed(back)

    def fdk():
        f = rtk.FDKConeBeamReconstructionFilter[image].New()
        f.SetInput(0, vol_src.GetOutput())
        f.SetInput(1, proj)
        f.SetGeometry(geometry)
        return f

    t_fdk, rec = timed(fdk)
    rec = np.transpose(itk.array_from_image(rec), (1, 2, 0))  # back to (z, y, x)
    np.save(workdir / "rtk_projections.npy", projections)
    np.save(workdir / "rtk_fdk.npy", rec)
    threads = itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads()
    (workdir / "rtk_times.json").write_text(
        json.dumps(
            dict(
                forward=t_fwd,
                backproject=t_bp,
                fdk=t_fdk,
                threads=threads,
                version=itk.Version.GetITKVersion(),
            )
        )
    )


# ---------------------------------------------------------------- jaxsim side
def _geometry(meta, angles):
    from jaxsim.kernels import ConeBeamGeometry, VolumeGeometry

    n, n_det, pitch = meta["n"], meta["n_det"], meta["pitch"]
    vol_geom = VolumeGeometry((n, n, n), (1.0, 1.0, 1.0))
    geom = ConeBeamGeometry(DSO, DSD, n_det, n_det, pitch, pitch, angles)
    return vol_geom, geom


def _time(fn, arg, repeats):
    t = time.perf_counter()
    fn(arg).block_until_ready()
    first = time.perf_counter() - t
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(arg).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return first, best, out


def jaxsim_run(meta, angles, vol, repeats):
    import jax
    import jax.numpy as jnp

    from jaxsim.kernels import cone_beam_backproject, cone_beam_project, fdk

    vol_geom, geom = _geometry(meta, angles)
    x = jnp.asarray(vol)
    project = jax.jit(lambda v: cone_beam_project(v, vol_geom, geom))
    back = jax.jit(lambda p: cone_beam_backproject(p, vol_geom, geom))
    recon = jax.jit(lambda p: fdk(p, vol_geom, geom))
    grad = jax.jit(jax.grad(lambda v: 0.5 * jnp.sum(project(v) ** 2)))
    # forward mode: the projector's JVP (the projection of the tangent)
    tangent = jax.jit(lambda v: jax.jvp(project, (v,), (v,))[1])
    rows = {}
    c, s, proj = _time(project, x, repeats)
    rows["forward"] = (c, s)
    c, s, _ = _time(back, proj, repeats)
    rows["backproject"] = (c, s)
    c, s, rec = _time(recon, proj, repeats)
    rows["fdk"] = (c, s)
    c, s, _ = _time(grad, x, repeats)
    rows["forward+backward (grad)"] = (c, s)
    c, s, _ = _time(tangent, x, repeats)
    rows["forward-mode (jvp)"] = (c, s)
    return rows, np.asarray(proj), np.asarray(rec)


def memory_child(n: int, n_angles: int) -> None:
    """Forward + backprojection at ``n^3 x n_angles``; print peak RSS (MiB)."""
    import jax.numpy as jnp

    from jaxsim.kernels import cone_beam_backproject, cone_beam_project

    meta, angles, vol = problem(n, n_angles, n)
    vol_geom, geom = _geometry(meta, angles)
    t = time.perf_counter()
    p = cone_beam_project(jnp.asarray(vol), vol_geom, geom).block_until_ready()
    t_f = time.perf_counter() - t
    t = time.perf_counter()
    cone_beam_backproject(p, vol_geom, geom).block_until_ready()
    t_b = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(peak_rss_mib=peak, forward_s=t_f, backproject_s=t_b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtk-python", default=os.environ.get("JAXSIM_RTK_PYTHON"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--views", type=int, default=180)
    parser.add_argument("--memory-size", type=int, default=256)
    parser.add_argument("--memory-views", type=int, default=360)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/conebeam.json")
    parser.add_argument("--rtk-worker", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rtk_worker:
        return rtk_worker(Path(args.rtk_worker), args.repeats)
    if args.memory_child:
        return memory_child(args.memory_size, args.memory_views)

    meta, angles, vol = problem(args.size, args.views, args.size)
    result = dict(
        problem=meta | dict(dso=DSO, dsd=DSD),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    rows, proj, rec = jaxsim_run(meta, angles, vol, args.repeats)
    result["jaxsim"] = {
        k: dict(first_call_s=c, steady_s=s) for k, (c, s) in rows.items()
    }
    if args.rtk_python:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            np.save(work / "volume.npy", vol)
            np.save(work / "angles.npy", angles)
            (work / "meta.json").write_text(json.dumps(meta))
            subprocess.run(
                [
                    args.rtk_python,
                    __file__,
                    "--rtk-worker",
                    tmp,
                    "--repeats",
                    str(args.repeats),
                ],
                check=True,
            )
            rtk_times = json.loads((work / "rtk_times.json").read_text())
            rtk_proj = np.load(work / "rtk_projections.npy")
            rtk_rec = np.load(work / "rtk_fdk.npy")
        long = rtk_proj > 0.5 * rtk_proj.max()
        rel = np.abs(proj[long] - rtk_proj[long]) / rtk_proj[long]
        inner = vol > 0
        result["rtk"] = rtk_times
        result["speedup_vs_rtk"] = {
            k: rtk_times[k] / rows[k][1] for k in ("forward", "backproject", "fdk")
        }
        result["agreement"] = dict(
            projection_rel_l2=float(
                np.linalg.norm(proj - rtk_proj) / np.linalg.norm(rtk_proj)
            ),
            projection_median_rel_long_rays=float(np.median(rel)),
            projection_p99_rel_long_rays=float(np.percentile(rel, 99)),
            fdk_rel_l2_inside=float(
                np.linalg.norm((rec - rtk_rec)[inner]) / np.linalg.norm(rtk_rec[inner])
            ),
        )
    out_path = Path(args.out)
    if args.skip_memory and out_path.exists():
        # Keep an earlier memory measurement (it takes minutes to redo).
        kept = json.loads(out_path.read_text()).get("memory")
        if kept:
            result["memory"] = kept
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))  # before the long memory run
    if not args.skip_memory:
        child = [sys.executable, __file__, "--memory-child"]
        child += ["--memory-size", str(args.memory_size)]
        child += ["--memory-views", str(args.memory_views)]
        out = subprocess.run(child, check=True, stdout=subprocess.PIPE, text=True)
        result["memory"] = dict(
            size=args.memory_size,
            views=args.memory_views,
            **json.loads(out.stdout.strip().splitlines()[-1]),
        )
        out_path.write_text(json.dumps(result, indent=1))
    header = f"{'operation':26s} {'jaxsim s':>9s} {'1st call':>9s} {'RTK s':>7s}"
    print(header + f" {'RTK/jaxsim':>10s}")
    for name, (c, s) in rows.items():
        key = name if name in ("forward", "backproject", "fdk") else None
        if "rtk" in result and key:
            peer = f"{result['rtk'][key]:7.2f} {result['rtk'][key] / s:10.2f}"
        else:
            peer = f"{'-':>7s} {'-':>10s}"
        print(f"{name:26s} {s:9.2f} {c:9.2f} {peer}")
    if "agreement" in result:
        print("agreement with RTK:", json.dumps(result["agreement"]))
    if "memory" in result:
        print("memory:", json.dumps(result["memory"]))


if __name__ == "__main__":
    main()
