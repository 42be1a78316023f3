"""Publishing figures: the cost of verifying an artifact against its manifest.json, and
push / pull throughput to a local OCI registry (Debian's docker-registry on 127.0.0.1,
filesystem storage, no auth) and to a registry folder, for one artifact.

Every repeat pushes to a new repository (the registry links blobs per repository, so
nothing is skipped as already present) and pulls into a new directory. Times are wall
clock medians over the repeats; MiB/s counts the artifact's bytes (the model card, a
few KiB, is not counted). Each step is timed until its bytes are on disk: dirty pages
are flushed (os.sync) before it, outside the timing, and after it, inside (the
registry's storage, the folder, the pulled directory all live on this disk). Usage:
    python benchmarks/bench_publish.py [--artifact out/smollm2-135m-instruct-fp8-h100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from inferc.compiler.publish import publish, pull, verify_artifact

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "compiler" / "publish"))
from registry_server import BINARY, RegistryServer  # noqa: E402  (the tests' registry launcher)


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _durable(transfer_s: float) -> float:
    """A step's transfer time plus the flush of what it wrote."""
    start = time.perf_counter()
    os.sync()
    return transfer_s + time.perf_counter() - start


def run(artifact: Path, repeats: int) -> dict:
    size = sum(f.size for f in verify_artifact(artifact).all_files)
    mib = size / 2**20
    times: dict[str, list[float]] = {k: [] for k in ("verify", "oci_push", "oci_pull", "folder_push", "folder_pull")}
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "registry").mkdir()
        server = RegistryServer(tmp / "registry").start()
        try:
            for r in range(repeats):
                os.sync()
                start = time.perf_counter()
                verify_artifact(artifact)
                times["verify"].append(time.perf_counter() - start)
                os.sync()
                done = publish(artifact, f"oci://{server.host}/bench/r{r}:v1")
                times["oci_push"].append(_durable(done.transfer_s))
                os.sync()
                got = pull(f"oci://{server.host}/bench/r{r}:v1", tmp / f"pulled-{r}")
                times["oci_pull"].append(_durable(got.transfer_s))
                shutil.rmtree(tmp / f"pulled-{r}")
                os.sync()
                done = publish(artifact, f"file://{tmp}/folder-{r}#v1")
                times["folder_push"].append(_durable(done.transfer_s))
                os.sync()
                got = pull(f"file://{tmp}/folder-{r}#v1", tmp / f"fpulled-{r}")
                times["folder_pull"].append(_durable(got.transfer_s))
                shutil.rmtree(tmp / f"fpulled-{r}")
                shutil.rmtree(tmp / f"folder-{r}")
        finally:
            server.stop()
    rows = {k: {"seconds_median": _median(v), "mib_s": mib / _median(v), "seconds": v} for k, v in times.items()}
    return {"artifact": str(artifact), "bytes": size, "files": len(verify_artifact(artifact).all_files), "repeats": repeats,
            "results": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=REPO / "out" / "smollm2-135m-instruct-fp8-h100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench_results")
    args = ap.parse_args()
    if not Path(BINARY).exists():
        sys.exit(f"{BINARY} is not installed: bash .ci/install-registry")
    res = run(args.artifact, args.repeats)
    print(f"{res['artifact']}: {res['files']} files, {res['bytes'] / 2**20:.1f} MiB, median of {res['repeats']}")
    print(f"| step | s | MiB/s |\n| --- | --- | --- |")
    labels = {"verify": "verify (sha256 + size of every file)", "oci_push": "push to the registry (oci://)",
              "oci_pull": "pull from the registry (oci://), digests checked", "folder_push": "publish to a folder (file://)",
              "folder_pull": "pull from a folder (file://)"}
    for key, label in labels.items():
        row = res["results"][key]
        print(f"| {label} | {row['seconds_median']:.2f} | {row['mib_s']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "publish.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
