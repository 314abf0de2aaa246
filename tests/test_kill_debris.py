"""A download stage killed with SIGKILL leaves no live workers, and its staging is cleaned by the next run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, tiny_params, write_params
from PIL import Image

DEADLINE_S = 120  # generous: the machine is shared; this bounds waiting, it is not a timing assertion


def make_mirror(root: Path, identities: int = 6, images_per_identity: int = 700) -> Path:
    """A local folder source big enough that copying and verifying it take a while."""
    for identity in range(identities):
        folder = root / f"pins_person{identity}"
        folder.mkdir(parents=True)
        for index in range(images_per_identity):
            buffer = io.BytesIO()
            Image.effect_noise((96, 96), 40 + index % 50).convert("RGB").save(buffer, format="JPEG")
            (folder / f"img{index}.jpg").write_bytes(buffer.getvalue())
    return root


STAGE_COMMAND = [sys.executable, "-m", "stages.download", "--raw", "data/raw.zip", "--manifest", "data/manifest.csv",
                 "--skipped", "data/skipped.csv",
                 "--report", "reports/download.json", "--kaggle-cache", ".cache/kaggle"]


def stage_env(project: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin", "HOME": str(project)}


def start_stage(project: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(STAGE_COMMAND, cwd=project, env=stage_env(project), stdout=log_file,
                                stderr=subprocess.STDOUT)


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find worker processes")
def test_sigkill_leaves_no_orphan_workers_and_the_next_run_cleans_staging(tmp_path):
    project = tmp_path / "project"
    write_params(project, tiny_params(download={"source": str(make_mirror(tmp_path / "mirror")), "min_side_px": 8}))
    log_path = tmp_path / "stage.log"

    def debris() -> set[str]:
        """What a killed run leaves beside its outputs: the staging folder and the half-written pack."""
        return {path.name for pattern in (".download-*", ".raw.zip.*.tmp") for path in (project / "data").glob(pattern)}

    # 1. Killed while its process pool verifies and packs the images.
    process = start_stage(project, log_path)
    first_workers: list[int] = []
    pooled = wait_for(lambda: len(first_workers.extend(children_of(process.pid)) or first_workers) >= 1, process)
    process.kill()
    process.wait()
    assert pooled and process.returncode == -9, f"killed mid-packing:\n{log_path.read_text()[-2000:]}"
    left = debris()
    assert left, "a SIGKILL leaves the staging folder and the half-written pack (what must be cleaned)"

    # 2. Killed again while packing: it first removed what the first run left.
    process = start_stage(project, log_path)
    workers: list[int] = list(first_workers)
    pooled = wait_for(lambda: len(workers.extend(children_of(process.pid)) or workers) > len(first_workers), process)
    process.kill()
    process.wait()
    assert pooled and process.returncode == -9, f"killed while verifying:\n{log_path.read_text()[-2000:]}"
    assert not left & debris(), "the second run removed the first run's staging and partial pack"
    assert "left in" in log_path.read_text(encoding="utf-8", errors="replace"), "and said so in its log"
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in set(workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in set(workers) if alive(pid)], "verify workers die with the stage (no orphans)"

    # 3. A clean run finishes and leaves no staging behind.
    done = subprocess.run(STAGE_COMMAND, cwd=project, env=stage_env(project), check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not debris(), "no staging or partial pack left after a finished run"
    assert (project / "data/manifest.csv").is_file(), "the rerun completed the stage"
