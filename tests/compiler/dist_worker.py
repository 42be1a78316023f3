"""One rank of distributed builds for the tests, run by compiler/launch.py (or alone: one
process, no torch.distributed). Several recipes are built one after the other in one
process group, so that the tests start few processes.

    dist_worker.py MODEL OUT_ROOT TIMEOUT_S RECIPE...        out: OUT_ROOT/<recipe stem>
    dist_worker.py MODEL OUT_ROOT TIMEOUT_S RECIPE --signal RANK LAYERS SIGNAL

With --signal, rank RANK sends itself SIGNAL (KILL: a rank dying mid-walk; STOP: a rank
hanging) once it has calibrated LAYERS layers."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from inferc.calibration.distributed import reducer_from_env
from inferc.compiler.build import build
from inferc.compiler.recipe import load_recipe
from inferc.core.errors import InferCError


def main(argv: list[str]) -> int:
    model, out_root, timeout_s, *rest = argv
    kill = rest[rest.index("--signal") + 1 :] if "--signal" in rest else None
    recipes = [load_recipe(Path(r)) for r in (rest[: rest.index("--signal")] if kill else rest)]
    reducer = reducer_from_env(recipes[0].calibration.shards, "cpu", float(timeout_s))

    def progress(label: str, done: int, total: int) -> None:
        if kill and reducer.rank == int(kill[0]) and label == "calibrating layers" and done == int(kill[1]):
            os.kill(os.getpid(), signal.Signals[f"SIG{kill[2]}"])

    try:
        for recipe in recipes:
            build(recipe, Path(out_root) / Path(recipe.source).stem, model_dir=Path(model), progress=progress, reducer=reducer)
    except InferCError as exc:
        print(f"inferc: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    finally:
        reducer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
