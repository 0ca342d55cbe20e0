"""U-Net training and inference throughput: jaxsim (JAX) vs MONAI (PyTorch) on CPU.

Cases: the MONAI-default residual U-Net (channels 16-32-64-128-256, strides 2, 2
residual subunits, PReLU, instance norm, 1 input channel, 4 classes) in 2D at
128 x 128 and 256 x 256 (batch 16) and in 3D at 16 x 128 x 128 (batch 2).

Rows per case: a training step (forward, softmax cross-entropy, backward, Adam
update; ``jax.jit`` over the split model state with donated buffers) and inference
(evaluation mode, forward only), as the compile/first call apart from the median and
min of the steady calls, in images/s. The MONAI ``UNet`` of the same topology is
timed by ``monai_peer.py`` under its own interpreter (``$MONAI_PYTHON``, default
/tmp/monai-venv/bin/python; see README_models.md) with ``--threads`` torch threads
(default 2). Each of ``--rounds`` rounds times, per case, ``--repeats`` JAX calls and
then ``--repeats`` torch calls back to back, so that both sides sample the same
moments of a shared machine; medians and mins are over all rounds, and the rows
report the ratios ``jax time / torch time`` of the medians and of the mins (below 1:
JAX faster). The peer rows are skipped when that interpreter is absent.

    python benchmarks/bench_models.py [--rounds 3] [--repeats 5] [--cases 2d128,3d]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _timing import block, print_table, write_json
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


def _times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return times


class JaxCase:
    """One case's compiled training step and inference, timed in rounds."""

    def __init__(self, case: dict):
        model = UNet(case["spatial_dims"], **TOPOLOGY, rngs=nnx.Rngs(0))
        self.params_count = count_params(model)
        key = jax.random.key(0)
        self.x = jax.random.normal(key, (case["batch"], *case["shape"], 1))
        self.y = jax.random.randint(jax.random.fold_in(key, 1), self.x.shape[:-1], 0, 4)
        tx = optax.adam(1e-3)
        params, rest, self.step = make_train_step(model, tx)
        self.state = [params, rest, tx.init(params)]
        self.model = model
        t0 = time.perf_counter()
        block(self.train())
        self.first = {"train": time.perf_counter() - t0}
        # evaluation mode on the same weights (the training arrays are donated)
        nnx.update(model, self.state[0], self.state[1])
        model.eval()
        graphdef, eval_state = nnx.split(model)
        # a copy: later training steps donate (delete) the arrays the model holds
        self.eval_state = jax.tree.map(jnp.copy, eval_state)
        self.forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
        t0 = time.perf_counter()
        block(self.infer())
        self.first["infer"] = time.perf_counter() - t0
        self.times = {"train": [], "infer": []}

    def train(self):
        *self.state, loss = self.step(*self.state, self.x, self.y)
        return loss

    def infer(self):
        return self.forward(self.eval_state, self.x)

    def run(self, repeats: int) -> None:
        self.times["train"] += _times(self.train, repeats)
        self.times["infer"] += _times(self.infer, repeats)


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
    parser.add_argument("--repeats", type=int, default=5, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cases = [CASES[c] for c in args.cases.split(",")]
    load_before = load()
    t0 = time.perf_counter()
    ours = {}
    for case in cases:
        print(f"jax: compiling {case['name']} ...", flush=True)
        ours[case["name"]] = JaxCase(case)
    theirs, versions = {}, None
    for r in range(args.rounds):  # rounds of back-to-back JAX, then torch, per case
        for case in cases:
            name = case["name"]
            print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
            ours[name].run(args.repeats)
            peer = torch_rows([case], args.repeats, args.threads)
            if peer is None:
                continue
            versions = {k: peer[k] for k in ("torch", "monai")}
            row = peer["rows"][0]
            assert row["params"] == ours[name].params_count, row
            got = theirs.setdefault(name, {"train": [], "infer": [], "first": row})
            got["train"] += row["train_times_s"]
            got["infer"] += row["infer_times_s"]
    rows = []
    for case in cases:
        name, jc = case["name"], ours[case["name"]]
        for kind in ("train", "infer"):
            t = jc.times[kind]
            row = {
                "case": f"{name}: {kind}",
                "framework": "jax",
                "first_s": jc.first[kind],
                "median_s": statistics.median(t),
                "min_s": min(t),
                "images_per_s": case["batch"] / statistics.median(t),
            }
            rows.append(row)
            if name not in theirs:
                continue
            u = theirs[name][kind]
            row["ratio"] = row["median_s"] / statistics.median(u)
            row["ratio_min"] = row["min_s"] / min(u)
            rows.append(
                {
                    "case": f"{name}: {kind}",
                    "framework": "torch",
                    "first_s": theirs[name]["first"][f"{kind}_first_s"],
                    "median_s": statistics.median(u),
                    "min_s": min(u),
                    "images_per_s": case["batch"] / statistics.median(u),
                }
            )
    info = {
        "topology": TOPOLOGY,
        "params": {c["name"]: ours[c["name"]].params_count for c in cases},
        "torch_threads": args.threads,
        "rounds": args.rounds,
        "repeats_per_round": args.repeats,
        "peer_versions": versions,
        "load_average_before": load_before,
        "load_average_after": load(),
        "wall_s": time.perf_counter() - t0,
        "times_s": {
            c["name"]: {
                "jax": ours[c["name"]].times,
                "torch": {
                    k: theirs.get(c["name"], {}).get(k) for k in ("train", "infer")
                },
            }
            for c in cases
        },
    }
    print(
        f"\nbackend {jax.default_backend()}, load average {load_before:.2f} before, "
        f"{info['load_average_after']:.2f} after; {args.rounds} rounds x "
        f"{args.repeats} repeats; ratio = jax time / torch time"
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
