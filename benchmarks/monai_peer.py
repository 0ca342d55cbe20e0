"""MONAI peer for ``bench_models.py`` and the reference figures of the model tests.

Runs ONLY under a separate virtual environment with PyTorch and MONAI (see
README_models.md); it imports neither jax nor jaxsim, and neither torch nor MONAI
is a jaxsim dependency.

    PY=/tmp/monai-venv/bin/python
    $PY benchmarks/monai_peer.py counts            # parameter counts (JSON)
    $PY benchmarks/monai_peer.py bench SPEC.json OUT.json
    $PY benchmarks/monai_peer.py export tests/models/data/monai_reference.npz

``counts`` prints the parameter counts of the MONAI configurations that
``tests/models/test_nets.py`` compares against. ``bench`` times MONAI's ``UNet``
for each case of the spec (a JSON list of ``{"name", "spatial_dims", "batch",
"shape", "in_channels", "out_channels", "channels", "strides",
"num_res_units"}``): a training step (forward, cross-entropy, backward, Adam
update) and inference (``eval()`` under ``torch.inference_mode``), on channel-first
float32 tensors, with ``torch.set_num_threads`` from ``--threads`` (default 2) and
denormals flushed to zero (as XLA:CPU does).
``export`` writes small MONAI networks (seeded, every parameter perturbed so that
no weight keeps its initial value), an input and MONAI's outputs to an ``.npz``
that ``tests/models/test_monai_parity.py`` loads into the jaxsim networks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from monai.networks.nets import DynUNet, SegResNetVAE, UNet  # noqa: I001

UNET_BASE = dict(in_channels=1, out_channels=4, channels=(16, 32, 64, 128, 256))


def _count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def counts() -> dict:
    """Parameter counts of the reference configurations (keys used by the tests)."""
    out = {}
    for d in (2, 3):
        for nru in (2, 0):
            for norm in ("instance", "batch"):
                net = UNet(
                    d, strides=(2, 2, 2, 2), num_res_units=nru, norm=norm, **UNET_BASE
                )
                out[f"unet{d}d_res{nru}_{norm}"] = _count(net)
        net = UNet(
            d, 2, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1,
            act="leakyrelu", kernel_size=5, up_kernel_size=3, dropout=0.1,
        )  # fmt: skip
        out[f"unet{d}d_small_leaky_k5"] = _count(net)
    for d in (2, 3):
        net = DynUNet(d, 1, 4, [3] * 5, [1, 2, 2, 2, 2], [2, 2, 2, 2])
        out[f"dynunet{d}d_5stages"] = _count(net)
    acdc_k = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    acdc_s = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    out["dynunet3d_acdc_plan"] = _count(DynUNet(3, 1, 4, acdc_k, acdc_s, acdc_s[1:]))
    net = DynUNet(
        3, 1, 2, [[3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        [1, [2, 2, 1], 2, 2], [[2, 2, 1], 2, 2], deep_supervision=True,
    )  # fmt: skip
    out["dynunet3d_4stages_ds"] = _count(net)
    for d, size in ((3, (32, 32, 32)), (2, (64, 48))):
        net = SegResNetVAE(size, spatial_dims=d, in_channels=1, out_channels=2)
        out[f"segresnetvae{d}d_{'x'.join(map(str, size))}"] = _count(net)
    net = SegResNetVAE(
        (16, 16, 32), spatial_dims=3, init_filters=16, in_channels=2,
        out_channels=3, vae_nz=32, blocks_down=(1, 1, 1), blocks_up=(1, 1),
    )  # fmt: skip
    out["segresnetvae3d_small"] = _count(net)
    return out


EXPORTS = {
    # name: (constructor, input shape (channel-first), train mode)
    "unet2d_res2": (
        lambda: UNet(2, 2, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=2),
        (2, 2, 16, 12),
        False,
    ),
    "unet3d_res0_batch_leaky": (
        lambda: UNet(
            3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0,
            norm="batch", act="leakyrelu",
        ),
        (2, 1, 8, 8, 12),
        True,  # batch statistics of this batch
    ),
    "dynunet3d_ds": (
        lambda: DynUNet(
            3, 1, 3, [[1, 3, 3], 3, 3], [1, [1, 2, 2], 2], [[1, 2, 2], 2],
            filters=(4, 8, 16), deep_supervision=True, deep_supr_num=1,
        ),
        (2, 1, 4, 8, 12),
        True,  # stacked (logits, upsampled head)
    ),
    "segresnetvae2d": (
        lambda: SegResNetVAE(
            (16, 16), vae_default_std=0.0, vae_nz=8, spatial_dims=2,
            init_filters=8, in_channels=1, out_channels=2,
            blocks_down=(1, 2), blocks_up=(1,),
        ),
        (2, 1, 16, 16),
        True,  # (logits, vae_loss); std 0 makes the loss deterministic
    ),
}  # fmt: skip


def export(path: str) -> None:
    arrays = {}
    for name, (build, shape, train) in EXPORTS.items():
        torch.manual_seed(0)
        net = build()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(*shape)
        net.train(train)
        with torch.no_grad():
            out = net(x)
        if isinstance(out, tuple):
            arrays[f"{name}/out"] = out[0].numpy()
            arrays[f"{name}/vae_loss"] = out[1].numpy()
        else:
            arrays[f"{name}/out"] = out.numpy()
        arrays[f"{name}/x"] = x.numpy()
        for key, p in net.named_parameters():
            arrays[f"{name}/param/{key}"] = p.detach().numpy()
    import numpy as np

    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {len(arrays)} arrays")


def _times(fn, repeats: int) -> tuple[float, list[float]]:
    """First call, then the seconds of ``repeats`` steady calls."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, times


def bench(spec: list[dict], repeats: int) -> list[dict]:
    rows = []
    for case in spec:
        torch.manual_seed(0)
        net = UNet(
            case["spatial_dims"], case["in_channels"], case["out_channels"],
            channels=case["channels"], strides=case["strides"],
            num_res_units=case["num_res_units"],
        )  # fmt: skip
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.randn(case["batch"], case["in_channels"], *case["shape"])
        y = torch.randint(0, case["out_channels"], (case["batch"], *case["shape"]))
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(net=net, opt=opt, x=x, y=y, loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            return loss.detach().item()

        net.train()
        first_train, train = _times(step, repeats)
        net.eval()

        def infer(net=net, x=x):
            with torch.inference_mode():
                return net(x).sum().item()

        first_infer, infer_s = _times(infer, repeats)
        rows.append(
            {
                "name": case["name"],
                "params": _count(net),
                "train_first_s": first_train,
                "train_times_s": train,
                "infer_first_s": first_infer,
                "infer_times_s": infer_s,
            }
        )
        print(
            f"torch {case['name']}: train {statistics.median(train):.3f} s, "
            f"infer {statistics.median(infer_s):.3f} s (medians)"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("counts", "bench", "export"))
    parser.add_argument("spec", nargs="?")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # XLA:CPU flushes denormals to zero; do the same so that neither side pays
    # for denormal arithmetic
    torch.set_flush_denormal(True)
    import monai

    versions = {"torch": torch.__version__, "monai": monai.__version__}
    if args.mode == "counts":
        json.dump({**versions, "counts": counts()}, sys.stdout, indent=1)
        print()
        return
    if args.mode == "export":
        export(args.spec)
        return
    with open(args.spec) as f:
        spec = json.load(f)
    rows = bench(spec, args.repeats)
    with open(args.out, "w") as f:
        json.dump({**versions, "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
