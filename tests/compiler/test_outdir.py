"""compiler/outdir.py: what a build may replace, the output lock, temporaries, the swap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from inferc.core.errors import OutputBusyError, OutputDirError, Terminated
from inferc.compiler.manifest import MANIFEST_FILE, is_inferc_manifest, make_manifest
from inferc.compiler.outdir import (
    OutputDir,
    _signals_deferred,
    acquire_lock,
    check_not_protected,
    check_replaceable,
    lock_path,
    locked,
    release_lock,
    remove_stale_temporaries,
    replace_dir,
    temporary_path,
)


def _artifact(root: Path, manifest: dict | None = None) -> Path:
    """A folder as a build leaves it: files, then a manifest listing them."""
    (root / "hf").mkdir(parents=True)
    (root / "hf" / "model.safetensors").write_bytes(os.urandom(64))
    (root / "report.md").write_text("# report\n")
    data = manifest if manifest is not None else make_manifest(root, {"name": "r"}, "h100", {"path": "m"}, None)
    (root / MANIFEST_FILE).write_text(json.dumps(data))
    return root


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert proc.pid != os.getpid()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


# --- what may be replaced -------------------------------------------------------------------


@pytest.mark.parametrize("given, what", [(".", "the current directory"), ("..", "a parent of the current directory"),
                                         ("{parent}", "a parent of the current directory"), ("/", "the root directory")])
def test_the_current_directory_its_parents_and_the_root_are_refused(tmp_path, monkeypatch, given, what):
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    path = Path(given.replace("{parent}", str(tmp_path)))
    with pytest.raises(OutputDirError, match=what):
        check_not_protected(path)
    check_not_protected(Path("art"))
    check_not_protected(tmp_path / "work" / "sibling")


def test_absent_and_empty_outputs_may_be_written(tmp_path):
    check_replaceable(tmp_path / "absent", force=False)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", force=True)
    with pytest.raises(OutputDirError, match="already exists; pass --force"):
        check_replaceable(tmp_path / "empty", force=False)


def test_an_untouched_artifact_may_be_replaced_with_force_only(tmp_path):
    art = _artifact(tmp_path / "art")
    check_replaceable(art, force=True)
    with pytest.raises(OutputDirError, match="already exists; pass --force"):
        check_replaceable(art, force=False)


def test_an_artifact_written_before_the_generator_field_is_recognised(tmp_path):
    legacy = _artifact(tmp_path / "art")
    data = json.loads((legacy / MANIFEST_FILE).read_text())
    del data["generator"]
    (legacy / MANIFEST_FILE).write_text(json.dumps(data))
    check_replaceable(legacy, force=True)


@pytest.mark.parametrize("manifest", [{"name": "someone else's"}, {"generator": "other-tool", "manifest_version": 1, "files": []},
                                      {"manifest_version": 1}, [1, 2]])
def test_a_folder_with_a_foreign_manifest_is_refused(tmp_path, manifest):
    art = _artifact(tmp_path / "art", manifest)
    with pytest.raises(OutputDirError, match="is not an inferc artifact"):
        check_replaceable(art, force=True)


def test_a_corrupt_manifest_is_not_inferc_s(tmp_path):
    art = _artifact(tmp_path / "art")
    (art / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(OutputDirError, match="is not an inferc artifact"):
        check_replaceable(art, force=True)


def test_a_folder_of_user_files_is_refused_and_named(tmp_path):
    user = tmp_path / "docs"
    user.mkdir()
    for name in ("thesis.tex", "a.txt", "b.txt", "c.txt"):
        (user / name).write_text("mine")
    with pytest.raises(OutputDirError, match=r"holds 'a.txt', 'b.txt', 'c.txt' and 1 more\); --force replaces only"):
        check_replaceable(user, force=True)
    with pytest.raises(OutputDirError, match="is not an inferc artifact"):
        check_replaceable(user, force=False)  # not "pass --force", which would not help


def test_an_artifact_holding_a_file_inferc_did_not_write_is_refused(tmp_path):
    art = _artifact(tmp_path / "art")
    (art / "hf" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="also holds 'hf/notes.txt', which inferc did not write"):
        check_replaceable(art, force=True)


def test_a_link_inside_an_artifact_counts_as_not_inferc_s(tmp_path):
    art = _artifact(tmp_path / "art")
    (tmp_path / "elsewhere").mkdir()
    (art / "data").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputDirError, match="also holds 'data'"):
        check_replaceable(art, force=True)


def test_a_regular_file_and_a_link_are_refused(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(OutputDirError, match="is a file, not an artifact folder"):
        check_replaceable(tmp_path / "afile", force=True)
    art = _artifact(tmp_path / "art")
    (tmp_path / "link").symlink_to(art)
    with pytest.raises(OutputDirError, match="is a symbolic link"):
        check_replaceable(tmp_path / "link", force=True)


def test_manifests_say_inferc_wrote_them(tmp_path):
    assert make_manifest(tmp_path, {}, "h100", {}, None)["generator"] == "inferc"
    assert is_inferc_manifest({"manifest_version": 1, "files": []})
    assert not is_inferc_manifest({"manifest_version": "1", "files": []})
    assert not is_inferc_manifest({"generator": "inferc-lookalike", "manifest_version": 1, "files": []})


# --- the lock ---------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_taker_and_names_the_holder(tmp_path):
    out = tmp_path / "art"
    fd = acquire_lock(out)
    assert lock_path(out).read_text().strip() == str(os.getpid())
    with pytest.raises(OutputBusyError, match=rf"another inferc build \(process {os.getpid()}\)"):
        acquire_lock(out)  # flock: a second open file description conflicts, even in one process
    release_lock(out, fd)
    assert not lock_path(out).exists()
    release_lock(out, acquire_lock(out))


def test_a_held_lock_refuses_another_process(tmp_path):
    out = tmp_path / "art"
    with locked(out):
        probe = ("import sys; from pathlib import Path; from inferc.compiler.outdir import acquire_lock\n"
                 "from inferc.core.errors import OutputBusyError\n"
                 "try:\n    acquire_lock(Path(sys.argv[1]))\nexcept OutputBusyError as e:\n    print(e)\n")
        got = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, timeout=60)
    assert f"(process {os.getpid()})" in got.stdout, got.stderr


def test_a_waiting_taker_gets_the_lock_once_the_holder_has_removed_its_file(tmp_path):
    out = tmp_path / "art"
    fd = acquire_lock(out)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(acquire_lock(out, wait=True)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got
    release_lock(out, fd)  # unlinks the file the waiter opened: it must retry on a new one
    waiter.join(30)
    assert got
    assert os.fstat(got[0]).st_ino == lock_path(out).stat().st_ino
    release_lock(out, got[0])


# --- temporaries and the swap --------------------------------------------------------------


def test_only_temporaries_of_gone_processes_are_removed(tmp_path, live_pid):
    out = tmp_path / "art"
    dead = _dead_pid()
    names = {
        f".art.inferc-tmp-{dead}": False, f".art.inferc-old-{dead}": False,  # out exists: the old one is dropped
        f".art.inferc-tmp-{live_pid}": True, f".art.inferc-tmp-{dead}x": True, ".art.inferc-tmp-": True,
        f".other.inferc-tmp-{dead}": True, f"art.inferc-tmp-{dead}": True, f".art.tmp-{dead}": True,
    }
    out.mkdir()
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    removed = remove_stale_temporaries(out)
    assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
    assert {n for n, kept in names.items() if kept} == {p.name for p in tmp_path.iterdir()} - {"art"}


def test_an_artifact_left_aside_by_a_cut_swap_goes_back(tmp_path):
    out = tmp_path / "art"
    dead = _dead_pid()
    _artifact(tmp_path / f".art.inferc-old-{dead}")
    (tmp_path / f".art.inferc-tmp-{dead}").mkdir()
    remove_stale_temporaries(out)
    check_replaceable(out, force=True)  # an intact artifact again
    assert {p.name for p in tmp_path.iterdir()} == {"art"}


def test_replace_dir_swaps_and_puts_the_old_back_when_the_new_cannot_come_in(tmp_path):
    out = tmp_path / "art"
    new = tmp_path / "new"
    new.mkdir()
    (new / "v").write_text("1")
    replace_dir(new, out)
    assert (out / "v").read_text() == "1" and not new.exists()
    with pytest.raises(FileNotFoundError):
        replace_dir(tmp_path / "missing", out)
    assert (out / "v").read_text() == "1"
    new.mkdir()
    (new / "v").write_text("2")
    replace_dir(new, out)
    assert (out / "v").read_text() == "2"
    assert {p.name for p in tmp_path.iterdir()} == {"art"}


def test_signals_wait_for_the_end_of_a_deferred_block():
    def terminate(_signum, _frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        reached = False
        with pytest.raises(Terminated):
            with _signals_deferred():
                signal.raise_signal(signal.SIGTERM)
                reached = True
        assert reached
        assert signal.getsignal(signal.SIGTERM) is terminate
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- OutputDir --------------------------------------------------------------------------------


def test_an_unfinished_build_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "art"
    with pytest.raises(RuntimeError):
        with OutputDir(out, force=False) as o:
            assert o.temporary == temporary_path(out) and o.temporary.is_dir() and lock_path(out).is_file()
            (o.temporary / "partial").write_text("x")
            raise RuntimeError("the build failed")
    assert list(tmp_path.iterdir()) == []  # the folders it had to create are gone too


def test_a_committed_build_leaves_only_its_artifact(tmp_path):
    out = tmp_path / "art"
    _artifact(out)
    with OutputDir(out, force=True) as o:
        _artifact(o.temporary / "x")
        o.commit()
    assert (out / "x" / MANIFEST_FILE).is_file() and not (out / MANIFEST_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_a_second_output_dir_is_refused_while_the_first_is_held(tmp_path):
    out = tmp_path / "art"
    with OutputDir(out, force=False) as first:
        with pytest.raises(OutputBusyError, match=str(os.getpid())):
            OutputDir(out, force=True).__enter__()
        assert first.temporary.is_dir() and lock_path(out).is_file()  # the refused one touched nothing
        first.commit()
    assert out.is_dir()


def test_what_a_user_puts_at_the_output_during_the_build_is_kept(tmp_path):
    out = tmp_path / "art"
    with pytest.raises(OutputDirError, match="is not an inferc artifact"):
        with OutputDir(out, force=True) as o:
            out.mkdir()
            (out / "doc.txt").write_text("mine")
            o.commit()
    assert (out / "doc.txt").read_text() == "mine"
    assert {p.name for p in tmp_path.iterdir()} == {"art"}


def test_a_parent_that_is_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(OutputDirError, match="cannot prepare output"):
        OutputDir(tmp_path / "afile" / "art", force=False).__enter__()
    assert (tmp_path / "afile").read_text() == "mine"
