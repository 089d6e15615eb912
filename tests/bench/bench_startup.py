"""Start-up: fresh interpreters running ``import aliquot`` and ``aliquot --help``.

    /work/venv/bin/python tests/bench/bench_startup.py [--quick] [--json] [--profile]

Each measurement is the wall time of a whole child process (fork/exec,
interpreter start-up, the imports, exit), started with ``subprocess.run``
from this process, nothing subtracted: ``python -c pass`` is measured the
same way and shown as the floor. The commands are run round-robin (so noise
spreads evenly) after two untimed warm-up rounds (which also write any
missing ``.pyc`` files). The child gets this process's environment minus
``ALIQUOT_*`` variables and runs in an empty temporary directory.

Targets (from the issue): ``import aliquot`` <= 60 ms; ``aliquot --help``
(the installed console script) <= 150 ms; ``import aliquot`` must not import
trio. ``--profile`` prints the slowest imports (``-X importtime``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, Row, Stats, parse_args, progress, reps

TARGET_IMPORT_MS = 60.0
TARGET_HELP_MS = 150.0
#: From the issue: peers' numbers, NOT measured here (kept only for context).
REPORTED_PEERS_MS = {"kedro": 384, "dask": 573, "curifactory": 816, "prefect": 1507}
WATCHED = (
    "trio",
    "click",
    "pluggy",
    "attrs",
    "orjson",
    "lmdb",
    "importlib_metadata",
    "aliquot._kernel",
    "aliquot_builtins",
    "numpy",
)


def child_env(pycache: str | None) -> dict[str, str]:
    """This process's environment minus ``ALIQUOT_*``.

    With ``pycache`` (a directory), bytecode caching is on and goes there
    (``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE`` removed): after the
    warm-up rounds every module loads from a ``.pyc``, as in a normal install,
    and nothing is written into the checkout. With None, the environment is
    kept as it is (e.g. ``PYTHONDONTWRITEBYTECODE=1`` compiles every module
    without a ``.pyc`` -- aliquot's own, in an editable install -- on every start).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIQUOT_")}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def run_once(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return elapsed


def modules_after(python: str, code: str, cwd: str, env: dict[str, str]) -> dict[str, Any]:
    probe = (
        f"{code}\nimport sys, json\n"
        f"names = {list(WATCHED)!r}\n"
        "print(json.dumps({'count': len(sys.modules), "
        "'imported': {n: n in sys.modules for n in names}}))"
    )
    out = subprocess.run(
        [python, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    import json

    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def importtime(cmd: list[str], cwd: str, env: dict[str, str], top: int = 20) -> str:
    """The ``top`` imports by cumulative time (``-X importtime``), as text."""
    proc = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        head, cumulative, name = line.split("|", 2)
        self_us = head.split(":", 1)[1]
        rows.append((int(cumulative), int(self_us), name.strip()))
    rows.sort(reverse=True)
    lines = [f"{'cumulative':>11} {'self':>8}  module"]
    lines += [f"{c / 1000:>9.1f}ms {s / 1000:>6.1f}ms  {n}" for c, s, n in rows[:top]]
    return "\n".join(lines)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    report = Report("bench_startup: fresh interpreters", args.quick)
    python = sys.executable
    script = str(Path(python).parent / "aliquot")
    if not os.path.exists(script):
        raise SystemExit(f"no console script at {script}: is aliquot installed in this venv?")
    repeat = reps(args, full=25, quick=5)
    commands: dict[str, list[str]] = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import aliquot'": [python, "-c", "import aliquot"],
        "python -c 'import aliquot; aliquot.task'": [python, "-c", "import aliquot; aliquot.task"],
        "python -c 'import aliquot; aliquot.Kernel'": [
            python,
            "-c",
            "import aliquot; aliquot.Kernel",
        ],
        "aliquot --help": [script, "--help"],
        "aliquot --version": [script, "--version"],
    }
    no_pyc = os.environ.get("PYTHONDONTWRITEBYTECODE")
    as_is = ["python -c pass", "python -c 'import aliquot'", "aliquot --help"] if no_pyc else []
    samples: dict[str, list[float]] = {k: [] for k in commands}
    samples.update({f"{k} [as-is env]": [] for k in as_is})
    with tempfile.TemporaryDirectory(prefix="aliquot-bench-startup-") as cwd:
        env = child_env(os.path.join(cwd, "pycache"))
        plain_env = child_env(None)
        for rnd in range(repeat + 2):
            warm = rnd < 2
            progress(f"[startup] round {rnd + 1}/{repeat + 2}{' (warm-up)' if warm else ''}...")
            runs = [(name, cmd, env) for name, cmd in commands.items()]
            runs += [(f"{name} [as-is env]", commands[name], plain_env) for name in as_is]
            for name, cmd, run_env in runs:
                elapsed = run_once(cmd, cwd, run_env)
                if not warm:
                    samples[name].append(elapsed)
        after_import = modules_after(python, "import aliquot", cwd, env)
        after_task = modules_after(python, "import aliquot; aliquot.task", cwd, env)
        if args.profile:
            profiled = (
                ("import aliquot", [python, "-c", "import aliquot"]),
                ("import aliquot; aliquot.task", [python, "-c", "import aliquot; aliquot.task"]),
                ("aliquot --help", [python, script, "--help"]),
            )
            for label, cmd in profiled:
                progress(
                    f"\n---- -X importtime: {label} (top 20 by cumulative) ----\n"
                    + importtime(cmd, cwd, env)
                )
            proc = subprocess.run(
                [python, "-m", "cProfile", "-s", "cumulative", script, "--help"],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            lines = proc.stdout.splitlines()
            start = next((i for i, line in enumerate(lines) if "Ordered by" in line), 0)
            progress(
                "\n---- cProfile: aliquot --help (top 40 by cumulative) ----\n"
                + "\n".join(lines[start : start + 42])
            )

    st = {k: Stats(v) for k, v in samples.items()}
    ms = {k: s.median * 1e3 for k, s in st.items()}
    floor = ms["python -c pass"]
    sec = f"wall time of a fresh process, bytecode cache on (median of {repeat})"
    targets = {
        "python -c 'import aliquot'": TARGET_IMPORT_MS,
        "aliquot --help": TARGET_HELP_MS,
    }
    for name in commands:
        if name == "python -c pass":
            report.add(Row(sec, f"{name} (floor)", ms[name], "ms", st[name], 1e3))
            continue
        limit = targets.get(name)
        report.add(
            Row(
                sec,
                name,
                ms[name],
                "ms",
                st[name],
                1e3,
                peer=floor,
                peer_label="python -c pass",
                peer_stats=st["python -c pass"],
                target=f"<= {limit:g} ms" if limit else "",
                ok=(ms[name] <= limit) if limit else None,
                note=f"{ms[name] - floor:.1f} ms above the floor",
            )
        )
    if as_is:
        sec_b = (
            f"the same with this environment as it is (PYTHONDONTWRITEBYTECODE={no_pyc}: "
            "modules without a .pyc are compiled on every start), information"
        )
        floor_b = ms["python -c pass [as-is env]"]
        for name in as_is:
            key = f"{name} [as-is env]"
            report.add(
                Row(
                    sec_b,
                    name,
                    ms[key],
                    "ms",
                    st[key],
                    1e3,
                    peer=None if name == "python -c pass" else floor_b,
                    peer_label="" if name == "python -c pass" else "python -c pass, as-is",
                    target=f"(target {targets[name]:g} ms applies above)"
                    if name in targets
                    else "",
                )
            )

    sec2 = "what `import aliquot` pulls in (checked in a subprocess)"
    trio_loaded = after_import["imported"]["trio"]
    report.add(
        Row(
            sec2,
            "import aliquot: 'trio' in sys.modules",
            float(trio_loaded),
            "(1 = yes)",
            target="not imported (0)",
            ok=not trio_loaded,
        )
    )
    for label, data in (
        ("import aliquot", after_import),
        ("import aliquot; aliquot.task", after_task),
    ):
        loaded = [n for n, yes in data["imported"].items() if yes]
        report.add(
            Row(
                sec2,
                f"{label}: modules in sys.modules",
                float(data["count"]),
                "modules",
                note=f"{label} loads: {', '.join(loaded) or 'none of the watched modules'}"
                f" (watched: {', '.join(WATCHED)})",
            )
        )

    sec3 = "peers: reported in the issue, NOT measured here (context only)"
    for peer, value in REPORTED_PEERS_MS.items():
        report.add(
            Row(
                sec3,
                f"{peer} (reported, not measured here)",
                None,
                "ms",
                peer=float(value),
                peer_label="reported in the issue",
            )
        )
    report.note(
        f"console script: {script}; interpreter: {python}; children run in an empty "
        "temporary directory without ALIQUOT_* variables"
    )
    report.note(
        "each time includes spawning the child from this process and its exit; "
        "nothing is subtracted (the floor row shows that fixed part); two warm-up "
        "rounds are discarded; commands run round-robin"
    )
    return report.finish(args)


if __name__ == "__main__":
    sys.exit(main())
