"""Per-site tables and pictures of federated runs.

The table has one row per site and method of the last round: ``direct``
(the global network), ``direct+finetune`` (it, fine-tuned at the site), ``local``
(the site's own network), ``sim-fl`` and ``sim-fl+finetune``, with Dice, HD95
and ASSD (mm) per structure averaged over the site's held-out volumes, for
``sim-fl`` the shape generator's reconstruction Dice of those volumes
(``glo-dice-*``, from the round that measured it), the site's training slices
and its peak memory, or ``status="failed"`` with the error.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from jaxsim.io import atomic_path
from jaxsim.train import STRUCTURES

__all__ = ["final_table", "write_table", "plot_sites", "write_report"]

_SCORES = [f"{m}-{s}" for m in ("dice", "hd95", "assd") for s in STRUCTURES]
# generator quality (sim-fl): held-out reconstruction Dice by the shape generator
_GLO = [f"glo-dice-{s}" for s in STRUCTURES] + ["glo-dice-mean"]
FIELDS = ["site", "method", "status", *_SCORES, "dice-mean", *_GLO, "test-volumes",
          "train-slices", "peak-rss-mb", "error"]  # fmt: skip


def final_table(config, history: list[dict]) -> list[dict]:
    """Rows of the last round in ``history``: one per site and method."""
    if not history:
        return []
    last = max(r["round"] for r in history)
    rows = []
    for r in (r for r in history if r["round"] == last):
        base = {"site": r["site"], "status": r["status"], "error": r.get("error", "")}
        common = {k: r.get(k) for k in ("test-volumes", "train-slices")}
        common["peak-rss-mb"] = max(
            (r.get(k) or 0.0 for k in ("peak-rss-mb", "train-peak-rss-mb")), default=0
        )
        scores = {k: r.get(k) for k in (*_SCORES, "dice-mean")}
        glo = [h for h in history if h["site"] == r["site"] and "glo-dice-mean" in h]
        if glo:  # the last round that measured the generator
            common.update({k: glo[-1].get(k) for k in _GLO})
        rows.append({**base, "method": config.task, **scores, **common})
        if any(k.startswith("ft-") for k in r):
            tuned = {k: r.get(f"ft-{k}") for k in (*_SCORES, "dice-mean")}
            rows.append(
                {**base, "method": f"{config.task}+finetune", **tuned, **common}
            )
    return rows


def write_table(prefix: str | os.PathLike, rows: list[dict]) -> None:
    """``PREFIX.csv`` and ``PREFIX.json`` of the per-site rows."""
    prefix = Path(prefix)
    csv_path = prefix.with_name(prefix.name + ".csv")
    with atomic_path(csv_path, overwrite=True, what="per-site table") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    json_path = prefix.with_name(prefix.name + ".json")
    with atomic_path(json_path, overwrite=True, what="per-site table") as tmp:
        tmp.write_text(json.dumps(rows, indent=1) + "\n")


def plot_sites(path: str | os.PathLike, rows: list[dict], title: str = "") -> None:
    """Grouped bars: Dice per structure (panels), site (groups) and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    sites = sorted({r["site"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in ok))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(sites))
    for ax, structure in zip(axes, STRUCTURES, strict=True):
        for j, method in enumerate(methods):
            values = []
            for site in sites:
                match = [r for r in ok if r["site"] == site and r["method"] == method]
                v = match[0].get(f"dice-{structure}") if match else None
                values.append(np.nan if v is None else float(v))
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, values, width,
                   label=method)  # fmt: skip
        for i, site in enumerate(sites):
            if not any(r["site"] == site for r in ok):
                ax.text(i, 0.05, "failed", ha="center", rotation=90, fontsize=8)
        ax.set_xticks(x, sites)
        ax.set_title(structure)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Dice on held-out cases")
    if methods:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, overwrite=True, what="per-site plot") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_report(out: str | os.PathLike, config, history: list[dict]) -> list[dict]:
    """``sites.csv``, ``sites.json`` and ``sites.png`` of a run in ``out``;
    returns the table."""
    out = Path(out)
    rows = final_table(config, history)
    write_table(out / "sites", rows)
    plot_sites(out / "sites.png", rows, f"{config.task}, {config.strategy}")
    return rows
