"""Benchmark: wall time of `dvc repro analyze` from an empty cache on the Pins mirror against the
naive floor (benchmarks/prep_floor.py) measured just before it, then of no-op runs.

Each cold run first times the floor (one process: unzip, decode every image, random split), then
copies the pipeline (dvc.yaml, params.yaml, facerec/, stages/, pyproject.toml) and the project's
DVC settings (.dvc/config: cache.type) into a fresh temporary git + DVC project whose
download.source is the mirror, and times every output line, so the log shows where each stage
starts and how long DVC spends caching outputs after it. It records the cache type in effect and
whether the packed dataset is hard-linked to the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, load_average, mirror_argument, summary
from prep_floor import run_floor

PROJECT_FILES = ["dvc.yaml", "params.yaml", "facerec", "stages", "pyproject.toml", "requirements.txt"]
STAGE_START = re.compile(r"Running stage '(\w+)'")


def make_project(target: Path, mirror: Path, env: dict) -> None:
    """A committed git + DVC project holding only the pipeline, its source set to the mirror."""
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    params = target / "params.yaml"
    text, replaced = re.subn(r"(?m)^(\s+source:).*$", rf"\1 {json.dumps(str(mirror.resolve()))}",
                             params.read_text(encoding="utf-8"), count=1)
    if not replaced:
        raise SystemExit("params.yaml has no download.source line to point at the mirror")
    params.write_text(text, encoding="utf-8")
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=target, env=env, check=True, capture_output=True)
    # The project's own DVC settings (cache.type = hardlink,copy), as users get them with a clone.
    shutil.copy2(REPO_ROOT / ".dvc" / "config", target / ".dvc" / "config")
    for command in ([sys.executable, "-m", "dvc", "config", "core.analytics", "false"],
                    ["git", "add", "-A"],
                    ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench"]):
        subprocess.run(command, cwd=target, env=env, check=True, capture_output=True)


def cache_links(project: Path, env: dict) -> dict:
    """The cache type DVC reads in the project; the packed dataset's size and whether it shares the cache's inode."""
    configured = subprocess.run([sys.executable, "-m", "dvc", "config", "cache.type"], cwd=project, env=env,
                                check=False, capture_output=True, text=True).stdout.strip()
    packed = project / "data" / "raw.zip"
    return {"cache_type": configured or "(default: reflink,copy)", "raw_zip_mb": round(packed.stat().st_size / 1e6, 1),
            "raw_zip_hardlinked": packed.stat().st_nlink > 1}


def timed_run(command: list[str], cwd: Path, env: dict) -> tuple[float, list[tuple[float, str]]]:
    """Run a command; return its wall time and every output line with its arrival time (s)."""
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as process:
        for line in process.stdout:
            lines.append((time.perf_counter() - started, line.rstrip()))
    if process.returncode:
        raise SystemExit(f"{command} failed:\n" + "\n".join(line for _, line in lines[-30:]))
    return time.perf_counter() - started, lines


def stage_seconds(wall: float, lines: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds from each 'Running stage' line to the next (the last runs to the end: DVC's commit)."""
    starts = [(at, match.group(1)) for at, line in lines if (match := STAGE_START.search(line))]
    ends = [at for at, _ in starts[1:]] + [wall]
    result = {"dvc_startup": round(starts[0][0], 1)} if starts else {}
    for (at, name), end in zip(starts, ends):
        result[name] = round(end - at, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--noop-runs", type=int, default=5)
    parser.add_argument("--keep-log", type=Path, help="write the timed log of the last cold run here")
    parser.add_argument("--cpus", type=int,
                        help="pin the floor and the pipeline to this many cores (CPU affinity, inherited by "
                             "every stage): how the ratio moves with cores")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cpus])
    # The stages are `python -m ...`: this interpreter's venv first on PATH; unbuffered for timing.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    result: dict = {"load_average_before": load_average(), "cpus": len(os.sched_getaffinity(0)), "cold": [], "noop": {}}
    with tempfile.TemporaryDirectory(prefix="facerec-bench-dvc-") as scratch:
        for run in range(args.cold_runs):
            project = Path(scratch) / f"project-{run}"
            project.mkdir()
            make_project(project, args.mirror, env)
            floor = run_floor(args.mirror)
            wall, lines = timed_run([*dvc, "repro", "analyze"], project, env)
            result["cold"].append({"wall_s": round(wall, 1), "floor_s": floor["wall_s"],
                                   "ratio": round(wall / floor["wall_s"], 2), "floor": floor,
                                   "stages_s": stage_seconds(wall, lines),
                                   "load_average": load_average(), **cache_links(project, env)})
            print(json.dumps(result["cold"][-1]), file=sys.stderr)
            if run < args.cold_runs - 1:
                shutil.rmtree(project)
        if args.keep_log:
            args.keep_log.write_text("".join(f"{at:7.2f} {line}\n" for at, line in lines), encoding="utf-8")
        noop_commands = {"repro_analyze": [*dvc, "repro", "analyze"], "status": [*dvc, "status"]}
        for name, command in noop_commands.items() if args.noop_runs else ():
            walls = [timed_run(command, project, env)[0] for _ in range(args.noop_runs)]
            result["noop"][name] = {**summary(walls), "load_average": load_average()}
    result["cold_wall_s"] = summary([run["wall_s"] for run in result["cold"]])
    result["floor_s"] = summary([run["floor_s"] for run in result["cold"]])
    result["ratio"] = summary([run["ratio"] for run in result["cold"]])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
