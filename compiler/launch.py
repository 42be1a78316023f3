"""`inferc build --distributed N`: N local processes of the same build, started with the
environment torchrun gives its workers (RANK, WORLD_SIZE, MASTER_ADDR, ...), watched
until they end. Once one rank fails the others end on their own (their next collective
fails, or times out); any still running when rank 0 has ended, or `grace_s` after the
failure, are terminated. Several
machines: run `torchrun ... -m inferc.compiler.cli build ...` on each instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from inferc.core.errors import ExitCode

_POLL_S = 0.1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch(nproc: int, command: list[str], grace_s: float) -> tuple[int, str | None]:
    """Run `command` (e.g. python -m inferc.compiler.cli build ...) as ranks 0..nproc-1 on
    this machine. Returns (exit code, a one-line description of the first failure, or
    None). Rank 0 keeps the terminal; the other ranks' stdout is dropped (they print
    nothing but errors, on stderr)."""
    port = _free_port()
    procs: list[subprocess.Popen] = []
    try:
        for rank in range(nproc):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                   "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))  # the cores we may use, shared
            procs.append(subprocess.Popen(command, env=env,
                                          stdout=None if rank == 0 else subprocess.DEVNULL))
        return _watch(procs, grace_s)
    finally:
        _stop(procs)


def _watch(procs: list[subprocess.Popen], grace_s: float) -> tuple[int, str | None]:
    failure: str | None = None
    deadline = None
    while True:
        codes = [p.poll() for p in procs]
        if failure is None:
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                rank, code = bad[0]
                failure = f"rank {rank} {_describe(code)}"
                deadline = time.monotonic() + grace_s
        if all(c is not None for c in codes) or (failure is not None and codes[0] is not None):
            break  # once rank 0 (the one writing the artifact) has ended after a failure, nothing is left to wait for
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(_POLL_S)
    if failure is None:
        return ExitCode.OK, None
    main = procs[0].poll()
    return (main if main not in (None, 0) and main > 0 else ExitCode.DISTRIBUTED), failure


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every rank still running (each removes its temporaries), SIGKILL after 10 s."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
        p.send_signal(signal.SIGCONT)  # a stopped (hung) rank handles SIGTERM only once it runs
    end = time.monotonic() + 10
    for p in alive:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
