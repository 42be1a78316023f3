"""The `inferc` command line. It owns the terminal: progress bars on stderr, a summary
table at the end, and one line plus a documented exit code for every user error."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from inferc.compiler import __version__
from inferc.core.errors import ExitCode, InferCError, Terminated
from inferc.compiler.targets import TARGETS, Quant


class _Signals:
    """SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated, so a build's `finally`
    blocks remove its temporary folder and lock; each arrival is recorded, so that the
    interruption is reported as one even where a library has turned the exception into
    another, and raised again at the next step or progress update where one swallowed it."""

    def __init__(self) -> None:
        self.arrived: list[int] = []

    def _handle(self, signum: int, _frame: Any) -> None:
        self.arrived.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def raise_pending(self) -> None:
        if self.arrived:
            raise Terminated() if self.arrived[0] == signal.SIGTERM else KeyboardInterrupt()

    @contextmanager
    def installed(self) -> Iterator[None]:
        self.arrived.clear()
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signal.SIGTERM: signal.getsignal(signal.SIGTERM), signal.SIGINT: signal.getsignal(signal.SIGINT)}
        if previous[signal.SIGTERM] is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._handle)
        if previous[signal.SIGINT] is signal.default_int_handler:  # not where it is ignored (a background job)
            signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)


_SIGNALS = _Signals()


class _Bars:
    """tqdm bars keyed by label, driven by the library's progress(label, done, total)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        _SIGNALS.raise_pending()
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self._bars.get(label)
        if bar is None:
            bar = self._bars[label] = tqdm(total=total, desc=label, file=sys.stderr, leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self._bars[label]


def _step(name: str) -> None:
    _SIGNALS.raise_pending()
    click.echo(f"[inferc] {name}", err=True)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inferc")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """inferc: quantize, compile and validate LLMs."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@cli.command()
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="HF checkpoint directory (default: the embedded SmolLM2-135M).")
@click.option("--target", help="Deployment target (see `inferc targets`).")
@click.option("--quant", type=click.Choice([q.value for q in Quant]), help="Quantization preset; default: the target's.")
@click.option("--recipe", "recipe_file", type=click.Path(path_type=Path), help="Recipe YAML (instead of --quant).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), help="Output directory (default: out/<model>-<quant>-<target>).")
@click.option("--force", is_flag=True, help="Replace an existing inferc artifact (or an empty folder) at --out; nothing else is replaced.")
@click.option("--emulate", is_flag=True, help="Allow a quant the target cannot run natively.")
@click.option("--dataset", help="Corpus for calibration and evaluation (.txt/.jsonl, or hf:<name>); default: text sampled from the model.")
@click.option("--eval-chunks", type=click.IntRange(min=1), help="Evaluation chunks of ctx_len tokens (at least 1).")
@click.option("--no-eval", is_flag=True, help="Skip evaluation (no quality/speed report, gates not checked).")
@click.option("--imatrix", type=click.Path(path_type=Path), help="llama.cpp importance matrix (imatrix.gguf) for GGUF K-quants.")
@click.option("--device", default="cpu", show_default=True, help="Torch device for calibration and the reference runtime.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--distributed", "nproc", type=click.IntRange(min=1), help="Calibrate in N local processes (torch.distributed: gloo on CPU, NCCL on GPU); rank 0 writes the artifact.")
@click.option("--dist-timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Seconds a distributed collective may wait for the other ranks before the build fails.")
def build(model_dir, target, quant, recipe_file, out_dir, force, emulate, dataset, eval_chunks, no_eval, imatrix, device, quiet,
          nproc, dist_timeout) -> None:
    """Build an artifact: quantize, export, evaluate, report."""
    import dataclasses

    from inferc.calibration.distributed import launched_by_torchrun, reducer_from_env

    if nproc and not launched_by_torchrun():
        _launch(nproc, dist_timeout)
        return

    from inferc.compiler.build import BuildGateError
    from inferc.compiler.build import build as run_build
    from inferc.compiler.recipe import load_preset, load_recipe
    from inferc.compiler.targets import get_target

    if recipe_file and quant:
        raise click.UsageError("give either --recipe or --quant, not both")
    if recipe_file:
        recipe = load_recipe(recipe_file)
    else:
        tgt = get_target(target or "h100") if (target or not quant) else None
        chosen = Quant(quant) if quant else tgt.default_quant  # type: ignore[union-attr]
        recipe = load_preset(chosen.value)
    recipe = recipe.with_overrides(target=target, emulate=emulate or None)
    if recipe.target is None:
        raise click.UsageError("no target: pass --target (see `inferc targets`)")
    if dataset:
        recipe = dataclasses.replace(
            recipe,
            calibration=dataclasses.replace(recipe.calibration, dataset=dataset),
            eval=dataclasses.replace(recipe.eval, dataset=dataset),
        )
    if eval_chunks is not None:
        recipe = dataclasses.replace(recipe, eval=dataclasses.replace(recipe.eval, chunks=eval_chunks))
    if no_eval:
        recipe = dataclasses.replace(recipe, eval=dataclasses.replace(recipe.eval, enabled=False), gates={})
    if out_dir is None:
        name = Path(model_dir).name if model_dir else "smollm2-135m-instruct"
        out_dir = Path("out") / f"{name}-{(recipe.quant.value if recipe.quant else recipe.name)}-{recipe.target}".lower()
    reducer = reducer_from_env(recipe.calibration.shards, device, dist_timeout)
    main = reducer.is_main  # other ranks of a distributed build print nothing but errors
    try:
        result = run_build(recipe, out_dir, model_dir=model_dir, force=force, device=device, progress=_Bars(main and not quiet),
                           step=_step if main else (lambda _name: _SIGNALS.raise_pending()), imatrix=imatrix, reducer=reducer)
    except BuildGateError as exc:
        _print_summary(exc.result.report)
        raise
    finally:
        reducer.close()
    if not main:
        return
    _print_summary(result.report)
    click.echo(f"artifact: {out_dir}")


_ARGV: list[str] = []


def _launch(nproc: int, timeout_s: float) -> None:
    """Re-run this command line as `nproc` ranks (compiler/launch.py)."""
    from inferc.compiler.launch import launch
    from inferc.core.errors import DistributedError

    args, skip = [], False
    for a in _ARGV:
        if skip:
            skip = False
        elif a == "--distributed":
            skip = True
        elif not a.startswith("--distributed="):
            args.append(a)
    code, failure = launch(nproc, [sys.executable, "-m", "inferc.compiler.cli", *args], grace_s=timeout_s + 30)
    if failure is not None:
        err = DistributedError(f"distributed build failed: {failure}; no artifact was written")
        err.exit_code = code
        raise err


def _print_summary(report: Any) -> None:
    from inferc.runtime.report import summary_rows

    click.echo(_table(summary_rows(report)))


@cli.command("eval")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--reference", type=click.Path(path_type=Path), help="Unquantized checkpoint to compare with (default: the artifact's source).")
@click.option("--dataset", help="Corpus (.txt/.jsonl); default: held-out text sampled from the reference model.")
@click.option("--ctx-len", type=click.IntRange(min=2), default=512, show_default=True)
@click.option("--chunks", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--method", type=click.Choice(["half", "full"]), default="half", show_default=True)
@click.option("--speed/--no-speed", default=True, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), help="Write the evaluation as JSON here.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--export", "export_format", help="Which of the artifact's exports to run (e.g. tensorrt); default: the first.")
def eval_cmd(artifact, reference, dataset, ctx_len, chunks, method, speed, json_out, device, quiet, export_format) -> None:
    """Evaluate an artifact (artifact directory, HF checkpoint or .gguf) against its reference."""
    from inferc.compiler.evaluate import evaluate_artifact
    from inferc.runtime.report import to_json

    report = evaluate_artifact(artifact, reference, dataset, ctx_len, chunks, method, speed, device,
                               progress=_Bars(not quiet), step=_step, export=export_format)
    if json_out:
        Path(json_out).write_text(to_json(report))
    _print_summary(report)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--tensors/--no-tensors", default=False, help="List every tensor.")
@click.option("--graph", "show_graph", is_flag=True, help="Print the model graph (one node a line) instead.")
@click.option("--fused", is_flag=True, help="With --graph: the graph after fuse_qkv, fuse_gate_up, fuse_residual_norm.")
def inspect(path, tensors, show_graph, fused) -> None:
    """Shapes, dtypes, quantization layout and bits per weight of a checkpoint, artifact or GGUF."""
    from inferc.compiler.inspect import graph_text, inspect_path

    if show_graph:
        click.echo(graph_text(path, fuse=fused))
        return

    summary, rows = inspect_path(path)
    click.echo(_table(summary))
    if tensors:
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))] if rows else []
        for r in rows:
            click.echo("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


@cli.group()
def recipe() -> None:
    """Validate and show recipes."""


@recipe.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
def recipe_validate(file) -> None:
    """Check a recipe: schema, pass options, target/quant combination."""
    from inferc.compiler.build import resolve_target
    from inferc.compiler.pipeline import make_plan
    from inferc.compiler.recipe import load_recipe

    r = load_recipe(file)
    plan = make_plan(r)
    note = resolve_target(r)[1] if r.target else None
    click.echo(f"{file}: valid (recipe '{r.name}', {len(plan.passes)} passes: {', '.join(p.name for p in plan.passes) or 'none'})")
    if note:
        click.echo(f"note: {note}")


@recipe.command("show")
@click.argument("name")
def recipe_show(name) -> None:
    """Print a shipped preset (see `inferc recipe list`)."""
    from inferc.compiler.recipe import preset_text

    click.echo(preset_text(name), nl=False)


@recipe.command("list")
def recipe_list() -> None:
    """List the shipped presets."""
    from inferc.compiler.recipe import load_preset, preset_names

    for name in preset_names():
        click.echo(f"  {name.ljust(10)} {load_preset(name).description}")


@cli.command()
def targets() -> None:
    """The deployment targets, their native precisions and defaults."""
    rows = [("target", "arch", "native", "default --quant", "exports")]
    for t in TARGETS.values():
        exports = ", ".join([f.value for f in t.default_formats] + [f"{f.value} (when a builder fits)" for f in t.optional_formats])
        rows.append((t.name, t.arch, ", ".join(q.value for q in t.native), t.default_quant.value, exports))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def _interrupted(signum: int) -> int:
    if signum == signal.SIGTERM:
        click.echo("inferc: interrupted (SIGTERM)", err=True)
        return ExitCode.TERMINATED
    click.echo("inferc: interrupted", err=True)
    return ExitCode.INTERRUPTED

@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--to", "uri", required=True, metavar="URI",
              help="oci://HOST[:PORT]/REPO:TAG, hf://OWNER/NAME[@REVISION] or file://PATH[#TAG].")
@click.option("--create", is_flag=True, help="hf://: create the repository (and the branch) when missing.")
@click.option("--private", is_flag=True, help="hf://: make a created repository private.")
@click.option("--message", help="hf://: the commit message.")
@click.option("--plain-http", is_flag=True, help="oci://: HTTP instead of HTTPS (loopback registries always use HTTP).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def publish(artifact, uri, create, private, message, plain_http, quiet) -> None:
    """Verify an artifact against its manifest.json, then publish it with its model card.

    Registry credentials come from INFERC_REGISTRY_USERNAME / INFERC_REGISTRY_PASSWORD or a
    docker config file (DOCKER_CONFIG or ~/.docker/config.json); the Hub token from HF_TOKEN."""
    from inferc.compiler.publish import publish as run_publish

    done = run_publish(artifact, uri, create=create, private=private, message=message, plain_http=plain_http,
                       progress=_Bars(not quiet), step=_step)
    click.echo(_table(_transfer_rows(done, "published")))


@cli.command()
@click.argument("uri")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Directory to restore the artifact into.")
@click.option("--force", is_flag=True, help="Replace an existing artifact directory.")
@click.option("--plain-http", is_flag=True, help="oci://: HTTP instead of HTTPS (loopback registries always use HTTP).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def pull(uri, out_dir, force, plain_http, quiet) -> None:
    """Restore a published artifact, every file checked against its digest and manifest.json."""
    from inferc.compiler.publish import pull as run_pull

    done = run_pull(uri, out_dir, force=force, plain_http=plain_http, progress=_Bars(not quiet))
    click.echo(_table(_transfer_rows(done, "pulled")))
    click.echo(f"artifact: {out_dir}")


def _transfer_rows(done: Any, verb: str) -> list[tuple[str, str]]:
    mib = done.bytes / 2**20
    rows = [(verb, done.uri), ("at", done.location), ("files", f"{done.files}, {mib:.2f} MiB")]
    if done.verify_s:
        rows.append(("verify", f"{done.verify_s:.2f} s"))
    rate = f", {mib / done.transfer_s:.1f} MiB/s" if done.transfer_s > 0 else ""
    rows.append(("transfer", f"{done.transfer_s:.2f} s{rate}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and a documented exit code;
    SIGINT and SIGTERM one line and 130 / 143, once the build has cleaned up."""
    _ARGV[:] = sys.argv[1:] if argv is None else argv
    with _SIGNALS.installed():
        try:
            cli.main(args=argv, prog_name="inferc", standalone_mode=False)
        except (click.exceptions.Abort, KeyboardInterrupt):
            return _interrupted(_SIGNALS.arrived[0] if _SIGNALS.arrived else signal.SIGINT)
        except Terminated:
            return _interrupted(signal.SIGTERM)
        except Exception as exc:
            if _SIGNALS.arrived:  # the signal's exception, turned into another on its way up
                return _interrupted(_SIGNALS.arrived[0])
            if isinstance(exc, click.ClickException):
                click.echo(f"inferc: {exc.format_message()}", err=True)
                return ExitCode.USAGE
            if isinstance(exc, InferCError):
                click.echo(f"inferc: error: {exc}", err=True)
                return int(exc.exit_code)
            raise
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
