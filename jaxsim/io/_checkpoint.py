"""Training checkpoints with orbax: array state plus a JSON description.

A run folder holds ``checkpoints/<step>/`` written by an orbax
``CheckpointManager`` (atomic: a step appears only once fully written), each with
two items: ``state``, a pytree of arrays (network parameters and statistics,
optimiser state, PRNG state as key data) and ``meta``, JSON (the model's
configuration, the step, anything the caller needs to rebuild the run). Nothing
is pickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp

__all__ = ["CheckpointStore"]


class CheckpointStore:
    """Save and restore training states under ``RUN_DIR/checkpoints``.

    Args:
        run_dir: the run folder (created if needed).
        max_to_keep: checkpoints kept (older ones are deleted); ``None`` keeps all.

    Example:
        >>> store = CheckpointStore(tmp_path)
        >>> store.save(10, {"w": jnp.ones(3)}, {"model": "unet2d"})
        >>> state, meta = store.restore({"w": jnp.zeros(3)})
    """

    def __init__(self, run_dir: str | os.PathLike, *, max_to_keep: int | None = 3):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def steps(self) -> list[int]:
        """Saved steps, ascending."""
        return sorted(self._manager.all_steps())

    @property
    def latest(self) -> int | None:
        """The last saved step, or ``None``."""
        return self._manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Write ``state`` (a pytree of arrays) and ``meta`` (JSON-able) at ``step``."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        self._manager.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON description saved at ``step`` (default the latest)."""
        step = self._step(step)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        )
        return dict(restored["meta"])

    def restore(self, like, step: int | None = None):
        """``(state, meta)`` at ``step`` (default the latest), with ``state``
        shaped like the pytree ``like`` (arrays or ``jax.ShapeDtypeStruct``)."""
        step = self._step(step)
        abstract = jax.tree_util.tree_map(
            lambda a: (
                a
                if isinstance(a, jax.ShapeDtypeStruct)
                else jax.ShapeDtypeStruct(a.shape, a.dtype)
            ),
            like,
        )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"])

    def _step(self, step):
        if step is None:
            step = self.latest
        if step is None or step not in self.steps:
            raise FileNotFoundError(
                f"no checkpoint{'' if step is None else f' at step {step}'} in "
                f"{self.directory}"
            )
        return step
