"""U-Net training and inference throughput: jaxsim (JAX) vs MONAI (PyTorch) on CPU.

Cases: the MONAI-default residual U-Net (channels 16-32-64-128-256, strides 2, 2
residual subunits, PReLU, instance norm, 1 input channel, 4 classes) in 2D at
128 x 128 and 256 x 256 (batch 16) and in 3D at 16 x 128 x 128 (batch 2).

Rows per case: a training step (forward, softmax cross-entropy, backward, Adam
update; ``jax.jit`` over the split model state with donated buffers) and inference
(evaluation mode, forward only), each as the compile/first call apart from the
median and min of steady repeats, in images/s. The MONAI ``UNet`` of the same
topology is timed in the same run by ``monai_peer.py`` under its own interpreter
(``$MONAI_PYTHON``, default /tmp/monai-venv/bin/python; see README_models.md) with
``--threads`` torch threads (default 2), right after the JAX rows of the same case,
and the rows report the ratios ``jax time / torch time`` of the medians and of the
mins (below 1: JAX faster). The peer rows are skipped when that interpreter is
absent.

    python benchmarks/bench_models.py [--repeats 10] [--cases 2d128,2d256,3d]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _timing import print_table, time_call, write_json
from flax import nnx

from jaxsim.models import UNet, count_params

HERE = Path(__file__).resolve().parent
TOPOLOGY = dict(
    in_channels=1,
    out_channels=4,
    channels=[16, 32, 64, 128, 256],
    strides=[2, 2, 2, 2],
    num_res_units=2,
)
CASES = {
    "2d128": dict(name="2D 128x128 b16", spatial_dims=2, batch=16, shape=[128, 128]),
    "2d256": dict(name="2D 256x256 b16", spatial_dims=2, batch=16, shape=[256, 256]),
    "3d": dict(name="3D 16x128x128 b2", spatial_dims=3, batch=2, shape=[16, 128, 128]),
}


def make_train_step(model: nnx.Module, tx: optax.GradientTransformation):
    """Jitted Adam step over the split state; params, rest and opt state donated."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, rest, x, y):
        m = nnx.merge(graphdef, params, rest, copy=True)
        logits = m(x)
        onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
        loss = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1))
        return loss, nnx.split(m, nnx.Param, ...)[2]

    @jax.jit
    def step(params, rest, opt_state, x, y):
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, rest, x, y
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    step_donated = jax.jit(step.__wrapped__, donate_argnums=(0, 1, 2))
    return params, rest, step_donated


def jax_rows(case: dict, repeats: int) -> dict:
    d = case["spatial_dims"]
    model = UNet(d, **{k: v for k, v in TOPOLOGY.items()}, rngs=nnx.Rngs(0))
    key = jax.random.key(0)
    x = jax.random.normal(key, (case["batch"], *case["shape"], 1), jnp.float32)
    y = jax.random.randint(jax.random.fold_in(key, 1), x.shape[:-1], 0, 4)
    tx = optax.adam(1e-3)
    params, rest, step = make_train_step(model, tx)
    state = {"p": params, "r": rest, "o": tx.init(params)}

    def train():
        state["p"], state["r"], state["o"], loss = step(
            state["p"], state["r"], state["o"], x, y
        )
        return loss

    t_train = time_call(train, repeats=repeats)
    nnx.update(model, state["p"], state["r"])  # the split arrays were donated
    model.eval()
    graphdef, eval_state = nnx.split(model)
    infer = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    t_infer = time_call(lambda: infer(eval_state, x), repeats=repeats)
    return {"params": count_params(model), "train": t_train, "infer": t_infer}


def torch_rows(cases: list[dict], repeats: int, threads: int) -> list[dict] | None:
    python = os.environ.get("MONAI_PYTHON", "/tmp/monai-venv/bin/python")
    if not Path(python).exists():
        print(f"MONAI peer skipped: no interpreter at {python} (set MONAI_PYTHON)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        spec = [{**c, **TOPOLOGY} for c in cases]
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        subprocess.run(
            [
                python, str(HERE / "monai_peer.py"), "bench",
                str(Path(tmp) / "spec.json"), str(Path(tmp) / "out.json"),
                "--threads", str(threads), "--repeats", str(repeats),
            ],
            check=True,
        )  # fmt: skip
        return json.loads((Path(tmp) / "out.json").read_text())


def load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cases = [CASES[c] for c in args.cases.split(",")]
    load_before = load()
    t0 = time.perf_counter()
    rows, raw, versions = [], {}, None
    for case in cases:  # back to back per case: JAX, then the peer
        print(f"jax: {case['name']} ...", flush=True)
        ours = raw[case["name"]] = jax_rows(case, args.repeats)
        peer = torch_rows([case], args.repeats, args.threads)
        theirs = None
        if peer is not None:
            versions = {k: peer[k] for k in ("torch", "monai")}
            theirs = peer["rows"][0]
            assert theirs["params"] == ours["params"], (theirs, ours["params"])
        for kind in ("train", "infer"):
            t = ours[kind]
            row = {
                "case": f"{case['name']}: {kind}",
                "framework": "jax",
                "first_s": t["first_s"],
                "median_s": t["median_s"],
                "min_s": t["min_s"],
                "images_per_s": case["batch"] / t["median_s"],
            }
            if theirs is not None:
                torch_s = theirs[f"{kind}_median_s"]
                row["ratio"] = t["median_s"] / torch_s
                row["ratio_min"] = t["min_s"] / theirs[f"{kind}_min_s"]
                rows.append(row)
                rows.append(
                    {
                        "case": f"{case['name']}: {kind}",
                        "framework": "torch",
                        "first_s": theirs[f"{kind}_first_s"],
                        "median_s": torch_s,
                        "min_s": theirs[f"{kind}_min_s"],
                        "images_per_s": case["batch"] / torch_s,
                    }
                )
            else:
                rows.append(row)
    info = {
        "topology": TOPOLOGY,
        "params": {c["name"]: raw[c["name"]]["params"] for c in cases},
        "torch_threads": args.threads,
        "peer_versions": versions,
        "load_average_before": load_before,
        "load_average_after": load(),
        "wall_s": time.perf_counter() - t0,
    }
    print(
        f"\nbackend {jax.default_backend()}, load average {load_before:.2f} before, "
        f"{info['load_average_after']:.2f} after; ratio = jax time / torch time"
    )
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("framework", "framework", "s"),
            ("first_s", "first call [s]", ".2f"),
            ("median_s", "median [s]", ".3f"),
            ("min_s", "min [s]", ".3f"),
            ("images_per_s", "images/s", ".1f"),
            ("ratio", "jax/torch (median)", ".2f"),
            ("ratio_min", "(min)", ".2f"),
        ],
    )
    path = write_json("models", {"rows": rows, "info": info})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
