"""Atomic writes: a file or folder is either the new one whole or the old one untouched."""

import json

import pytest
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_bytes, atomic_write_json, staged_dir


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    atomic_write_json(p, {"a": [1, 2]})
    assert json.loads(p.read_text()) == {"a": [1, 2]}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "r.bin"
    p.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["r.bin"]


def test_staged_dir_swaps_in_on_success_and_keeps_the_old_on_failure(tmp_path):
    out = tmp_path / "art"
    with staged_dir(out) as tmp:
        (tmp / "manifest.json").write_text("1")
    assert (out / "manifest.json").read_text() == "1"
    with pytest.raises(RuntimeError), staged_dir(out) as tmp:
        (tmp / "manifest.json").write_text("2")
        raise RuntimeError("export failed")
    assert (out / "manifest.json").read_text() == "1"
    with staged_dir(out) as tmp:
        (tmp / "manifest.json").write_text("3")
    assert (out / "manifest.json").read_text() == "3"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["art"]  # no staging left behind


def test_staged_dir_refuses_a_folder_that_is_not_an_artifact(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(AvedgeError, match="not an avedge artifact"), staged_dir(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from avedge.runtime.fsutil import atomic_path, atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"1")
    finally:
        os.umask(old)
    for name in ("a.json", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_build_lock_makes_a_second_builder_wait_and_reuse_the_result(tmp_path):
    import threading
    import time

    from avedge.runtime.fsutil import build_lock

    target, log, inside = tmp_path / "cache" / "artifact", [], threading.Event()

    def builder(name):
        with build_lock(target):
            inside.set()
            if not target.exists():
                log.append(f"{name} builds")
                time.sleep(0.3)  # long enough for the other builder to arrive and wait
                target.mkdir()
            else:
                log.append(f"{name} reuses")

    first = threading.Thread(target=builder, args=("first",))
    first.start()
    inside.wait(5)
    second = threading.Thread(target=builder, args=("second",))
    second.start()
    first.join(5)
    second.join(5)
    assert log == ["first builds", "second reuses"]
