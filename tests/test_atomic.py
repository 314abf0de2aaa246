"""Atomic writes: outputs get the mode a plain write would have, and reach the disk before the rename."""

from __future__ import annotations

import os
import stat

import pytest

from facerec import atomic


@pytest.fixture
def umask_022():
    """Run the test under the common umask 022, restoring the caller's afterwards."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask_022):
    atomic.write_json(tmp_path / "metrics/eval.json", {"accuracy": 0.5})
    with atomic.atomic_dir(tmp_path / "models") as staging:
        (staging / "labels.json").write_text("[]", encoding="utf-8")
        atomic.write_json(staging / "model_card.json", {})
    plain = tmp_path / "plain.json"
    plain.write_text("{}", encoding="utf-8")
    assert mode(tmp_path / "metrics/eval.json") == mode(plain) == 0o644, \
        "an atomic file is readable by others like a plain write under umask 022 (mkstemp gives 0600)"
    assert mode(tmp_path / "models") == 0o755, "an atomic folder gets mkdir's mode under umask 022 (mkdtemp gives 0700)"
    assert mode(tmp_path / "models/model_card.json") == 0o644, "files written inside a staged folder too"


def test_the_umask_is_read_not_assumed(tmp_path):
    previous = os.umask(0o077)
    try:
        atomic.write_json(tmp_path / "private.json", {})
        assert atomic.current_umask() == 0o077, "current_umask reports the process umask"
    finally:
        os.umask(previous)
    assert mode(tmp_path / "private.json") == 0o600, "a strict umask is respected, not widened"


def test_file_and_folder_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                        real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (events.append(("replace", str(dst))),
                                                                real_replace(src, dst))[1])
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"a": 1})
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], f"file flushed, renamed, then its folder flushed: {events}"
    assert events[0][1].startswith(str(tmp_path / ".metrics.json.")), "the temporary file is the one flushed"
    assert events[2][1] == str(tmp_path), "the folder holding the rename is flushed"


def test_a_failed_block_leaves_the_old_output_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"good": True})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as temp_path:
        temp_path.write_text("half", encoding="utf-8")
        raise RuntimeError("crash mid-write")
    assert target.read_text(encoding="utf-8").strip().startswith("{"), "the previous output is untouched"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json"], "no temporary left behind"


def test_a_folder_left_half_written_by_a_killed_run_is_removed_by_the_next_write(tmp_path):
    (tmp_path / ".models.abc123.tmp").mkdir()  # what SIGKILL during atomic_dir leaves behind
    (tmp_path / ".models.abc123.tmp/model.keras").write_bytes(b"half a model")
    (tmp_path / ".models.def456.tmp.old").mkdir()
    (tmp_path / ".modelsX.keep.tmp").mkdir()  # another target's name: not ours to remove
    with atomic.atomic_dir(tmp_path / "models") as staging:
        (staging / "labels.json").write_text("[]", encoding="utf-8")
    assert sorted(path.name for path in tmp_path.iterdir()) == [".modelsX.keep.tmp", "models"], \
        "stale staging of this target is gone, other names are untouched"


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    set_aside = tmp_path / ".gallery.4242.tmp.old"  # the old folder, renamed aside; the new one never moved in
    set_aside.mkdir()
    (set_aside / "gallery.json").write_text('{"people": 3}', encoding="utf-8")
    with pytest.raises(RuntimeError), atomic.atomic_dir(tmp_path / "gallery"):
        raise RuntimeError("the next run fails too")
    assert (tmp_path / "gallery" / "gallery.json").read_text(encoding="utf-8") == '{"people": 3}', \
        "the only complete copy is put back, not cleaned up as staging"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gallery"], "and nothing else is left"
