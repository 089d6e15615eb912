"""The ``aliquot`` command with broken, blocked and extra plugins.

Rules (DESIGN.md "Loading plugins", kernel/aliquot/cli.py): a broken plugin
never breaks what only *describes* (``--help`` of every command, ``--version``,
``plugins``), which shows it with its error; ``aliquot run`` refuses with one
line on stderr (exit 2) naming the plugin and ``-p no:NAME``; blocking it
(``-p no:NAME``, ALIQUOT_DISABLE_PLUGINS, ALIQUOT_DISABLE_PLUGIN_AUTOLOAD=1)
recovers. Plugins are real installed distributions (``make_dist``): the
subprocess tests put their site on PYTHONPATH and run the installed
``aliquot`` script; the in-process ones use ``aliquot.testing.run_cli``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import aliquot
from aliquot.testing import CliResult, run_cli

VERSION = "2.7.1"
BUILTINS = (
    "executor_inline",
    "executor_processes",
    "executor_threads",
    "function",
    "serializer_bytes",
    "serializer_json",
    "serializer_pickle",
    "store_lmdb",
    "store_memory",
)
SCRIPT = Path(sys.executable).with_name("aliquot")

TASKS = """
import aliquot

@aliquot.task(outputs=["doubled"])
def double(x: int = 21) -> int:
    return 2 * x
"""
DICT_TASKS = """
import aliquot

@aliquot.task(outputs=["data"])
def make_dict() -> dict:
    return {"n": [1, 2, 3]}
"""

# ---------------------------------------------------------------- broken plugins

SERIALIZER = """
import aliquot

class Serializer:
    name = {name!r}
    version = "1"
    types = ()
    def dumps(self, value, ctx):
        return b""
    def loads(self, data, ctx):
        return None

@aliquot.hookimpl
def aliquot_register_serializers(register):
    register(Serializer(), replace={replace!r})
"""


@dataclass(frozen=True)
class Case:
    """A broken plugin: one distribution ``aqp-NAME`` per entry point, in PYTHONPATH order."""

    id: str
    plugins: dict[str, str]  # entry-point name -> module source
    blamed: str  # the plugin the error is attributed to
    cause: tuple[str, ...]  # substrings of the cause

    def param(self, check: str = "") -> object:
        marks = []
        return pytest.param(self, id=self.id, marks=marks)


NOT_SHOWN = (
    "BUG: the CLI's tolerant PluginManager (CliState.plugin_manager) never calls the "
    "registration hooks (only aliquot_register_commands), so a plugin that fails there "
    "(raises, duplicate name) is listed as 'loaded' by `aliquot plugins` and missing from "
    "the --help note, while `aliquot run` refuses because of it"
)
REGISTRATION_BUGS = {"plugins_json": NOT_SHOWN, "help_note": NOT_SHOWN}

CASES = [
    Case(
        "import_error",
        {"import_error": "import aqp_missing_dependency_xyz\n"},
        "import_error",
        ("ModuleNotFoundError", "aqp_missing_dependency_xyz"),
    ),
    Case(
        "syntax_error",
        {"syntax_error": "def broken(:\n    pass\n"},
        "syntax_error",
        ("SyntaxError",),
    ),
    Case(
        "raises_at_import",
        {"raises_at_import": "raise RuntimeError('boom at import')\n"},
        "raises_at_import",
        ("RuntimeError: boom at import",),
    ),
    Case(
        "exits_at_import",
        {"exits_at_import": "import sys\nsys.exit('bye from plugin')\n"},
        "exits_at_import",
        ("SystemExit", "bye from plugin"),
    ),
    Case(
        "misspelt_hook",
        {
            "misspelt_hook": """
                import aliquot

                @aliquot.hookimpl
                def aliquot_register_serializer(register):
                    pass
            """
        },
        "misspelt_hook",
        ("'aliquot_register_serializer'", "did you mean 'aliquot_register_serializers'"),
    ),
    Case(
        "unknown_argument",
        {
            "unknown_argument": """
                import aliquot

                @aliquot.hookimpl
                def aliquot_register_serializers(register, flavour):
                    pass
            """
        },
        "unknown_argument",
        ("aliquot_register_serializers", "flavour"),
    ),
    Case(
        "async_hook",
        {
            "async_hook": """
                import aliquot

                @aliquot.hookimpl
                async def aliquot_register_serializers(register):
                    pass
            """
        },
        "async_hook",
        ("aliquot_register_serializers", "async def"),
    ),
    Case(
        "wrapper_hook",
        {
            "wrapper_hook": """
                import aliquot

                @aliquot.hookimpl(wrapper=True)
                def aliquot_register_serializers(register):
                    return (yield)
            """
        },
        "wrapper_hook",
        ("aliquot_register_serializers", "wrapper"),
    ),
    Case(
        "registration_raises",
        {
            "registration_raises": """
                import aliquot

                @aliquot.hookimpl
                def aliquot_register_serializers(register):
                    raise RuntimeError("registration boom")
            """
        },
        "registration_raises",
        ("RuntimeError: registration boom",),
    ),
    # dup_first comes first on PYTHONPATH, so it is registered first and called
    # last (pluggy calls later plugins first): its register() is the conflict.
    Case(
        "duplicate_serializer",
        {
            "dup_first": SERIALIZER.format(name="dup", replace=False),
            "dup_second": SERIALIZER.format(name="dup", replace=False),
        },
        "dup_first",
        ("RegistrationError", "conflicts", "'dup_first'", "'dup_second'", "'dup'"),
    ),
]
IMPORT_ERROR = CASES[0]

# ---------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Installed:
    """A case's sites (PYTHONPATH order) and a working directory holding tasks.py."""

    sites: tuple[Path, ...]
    cwd: Path


def install(plugins: dict[str, str], make_dist: Callable[..., Path], root: Path) -> Installed:
    sites = []
    for index, (name, source) in enumerate(plugins.items()):
        site = root / f"site{index}-{name}"
        make_dist(
            f"aqp-{name}",
            VERSION,
            entry_points={name: f"aqp_{name}"},
            modules={f"aqp_{name}": source},
            site=site,
        )
        sites.append(site)
    cwd = root / "work"
    cwd.mkdir()
    (cwd / "tasks.py").write_text(TASKS)
    (cwd / "dict_tasks.py").write_text(DICT_TASKS)
    return Installed(tuple(sites), cwd)


@pytest.fixture(scope="module")
def installed(
    make_dist: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Case], Installed]:
    """``installed(case)``: the case's distributions, built once per module."""
    cache: dict[str, Installed] = {}

    def get(case: Case) -> Installed:
        if case.id not in cache:
            cache[case.id] = install(case.plugins, make_dist, tmp_path_factory.mktemp(case.id))
        return cache[case.id]

    return get


def aliquot_cli(
    *args: str, at: Installed, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``aliquot`` script in a subprocess with the sites on PYTHONPATH."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "aliquot.cli"]
    environment = {**os.environ, **(env or {})}
    environment.pop("PYTHONPATH", None)
    if at.sites:
        environment["PYTHONPATH"] = os.pathsep.join(map(str, at.sites))
    return subprocess.run(
        [*command, *args],
        cwd=at.cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli(
    sys_path: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """``cli(installed, *args, env=None)``: ``run_cli`` in-process (autoload on) with the
    sites on sys.path, in the case's working directory."""
    active: set[Path] = set()

    def call(at: Installed, *args: str, env: dict[str, str] | None = None) -> CliResult:
        for site in reversed(at.sites):
            if site not in active:
                sys_path(site)
                active.add(site)
        monkeypatch.chdir(at.cwd)
        return run_cli(*args, env=env, autoload=True)

    return call


def one_line(text: str) -> str:
    return " ".join(text.split())


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = lines[0]
    assert line.startswith("aliquot: error: ")
    for needle in needles:
        assert needle in line
    return line


# ---------------------------------------------------------------- broken plugins: describing


@pytest.mark.parametrize("case", [c.param("plugins_json") for c in CASES])
def test_plugins_json_lists_the_broken_plugin_with_its_error(
    case: Case, installed: Callable[[Case], Installed]
) -> None:
    """``aliquot plugins --json`` exits 0 and shows the plugin with status error, its
    distribution and version, and the cause."""
    proc = aliquot_cli("plugins", "--json", at=installed(case))
    assert proc.returncode == 0, proc.stderr
    infos = {i["name"]: i for i in json.loads(proc.stdout)}
    info = infos[case.blamed]
    assert info["status"] == "error"
    assert (info["distribution"], info["version"]) == (f"aqp-{case.blamed}", VERSION)
    for cause in case.cause:
        assert cause in info["error"]
    assert infos["serializer_json"]["status"] == "loaded"


@pytest.mark.parametrize("case", [c.param("help_note") for c in CASES])
def test_root_help_works_and_notes_the_broken_plugin(
    case: Case, installed: Callable[[Case], Installed]
) -> None:
    """``aliquot --help`` exits 0, lists the commands and names the failed plugin in its note."""
    proc = aliquot_cli("--help", at=installed(case))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: aliquot")
    assert "Note: plugin(s)" in proc.stdout
    note = one_line(proc.stdout.split("Note: plugin(s)", 1)[1])
    assert note.startswith(f"{case.blamed} failed to load")
    assert "-p no:NAME" in note


HELP_COMMANDS = [
    ("run",),
    ("runs",),
    ("show",),
    ("plugins",),
    ("store",),
    ("store", "verify"),
    ("store", "gc"),
    ("store", "stats"),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_version_plugins_and_every_command_help_work_while_a_plugin_is_broken(
    case: Case, installed: Callable[[Case], Installed], cli: Callable[..., CliResult]
) -> None:
    """``--version``, ``plugins`` and ``--help`` of every command exit 0 with a broken plugin."""
    at = installed(case)
    result = cli(at, "--version")
    assert (result.exit_code, result.stdout.strip()) == (0, f"aliquot {aliquot.__version__}")
    result = cli(at, "plugins")
    assert result.exit_code == 0, result
    assert case.blamed in result.stdout
    for command in HELP_COMMANDS:
        result = cli(at, *command, "--help")
        assert result.exit_code == 0, (command, result)
        assert result.stdout.startswith(f"Usage: aliquot {' '.join(command)} "), result


# ---------------------------------------------------------------- broken plugins: running


@pytest.mark.parametrize("case", [c.param("one_line") for c in CASES])
def test_run_refuses_with_one_line_naming_the_plugin(
    case: Case, installed: Callable[[Case], Installed]
) -> None:
    """``aliquot run`` exits 2 with one line on stderr naming the plugin, its distribution,
    the cause and ``-p no:NAME``; no traceback, nothing on stdout."""
    proc = aliquot_cli("run", "tasks.py", at=installed(case))
    assert_one_error_line(
        proc,
        f"plugin {case.blamed!r}",
        f"distribution aqp-{case.blamed} {VERSION}",
        f"-p no:{case.blamed}",
        *case.cause,
    )
    assert proc.stdout == ""


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_run_with_traceback_flag_shows_the_traceback(
    case: Case, installed: Callable[[Case], Installed], cli: Callable[..., CliResult]
) -> None:
    """``aliquot --traceback run`` still exits 2 but prints the traceback too."""
    result = cli(installed(case), "--traceback", "run", "tasks.py")
    assert result.exit_code == 2, result
    assert "Traceback (most recent call last)" in result.stderr
    assert "PluginLoadError" in result.stderr
    assert f"aliquot: error: plugin {case.blamed!r}" in result.stderr


@pytest.mark.parametrize(
    "how", ["-p no:NAME", "ALIQUOT_DISABLE_PLUGINS", "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD"]
)
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_blocking_the_broken_plugin_lets_run_succeed(
    case: Case, how: str, installed: Callable[[Case], Installed], cli: Callable[..., CliResult]
) -> None:
    """``-p no:NAME`` (subprocess), ALIQUOT_DISABLE_PLUGINS=NAME and
    ALIQUOT_DISABLE_PLUGIN_AUTOLOAD=1 (in-process) each let ``aliquot run`` succeed."""
    at = installed(case)
    if how == "-p no:NAME":
        proc = aliquot_cli("-p", f"no:{case.blamed}", "run", "tasks.py", at=at)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        value = case.blamed if how == "ALIQUOT_DISABLE_PLUGINS" else "1"
        result = cli(at, "run", "tasks.py", env={how: value})
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert code == 0, stderr
    assert "doubled = 42" in stdout


# ---------------------------------------------------------------- unavailable is not broken


def test_unavailable_plugin_is_listed_and_does_not_stop_runs(
    make_dist: Callable[..., Path], tmp_path: Path
) -> None:
    """``raise aliquot.PluginUnavailable("needs foo")``: listed as unavailable with the reason,
    no note in --help, and ``aliquot run`` works."""
    at = install(
        {"optional": "import aliquot\nraise aliquot.PluginUnavailable('needs foo')\n"},
        make_dist,
        tmp_path,
    )
    proc = aliquot_cli("plugins", "--json", at=at)
    assert proc.returncode == 0, proc.stderr
    info = {i["name"]: i for i in json.loads(proc.stdout)}["optional"]
    assert (info["status"], info["error"]) == ("unavailable", "needs foo")
    assert (info["distribution"], info["version"]) == ("aqp-optional", VERSION)
    proc = aliquot_cli("--help", at=at)
    assert proc.returncode == 0
    assert "Note:" not in proc.stdout
    proc = aliquot_cli("run", "tasks.py", at=at)
    assert proc.returncode == 0, proc.stderr
    assert "doubled = 42" in proc.stdout


# ---------------------------------------------------------------- -p no:NAME and --help


def test_p_no_name_hides_the_broken_plugin_from_the_help_note(
    installed: Callable[[Case], Installed],
) -> None:
    """``aliquot -p no:NAME --help``: the blocked plugin is not reported as failed."""
    proc = aliquot_cli("-p", f"no:{IMPORT_ERROR.blamed}", "--help", at=installed(IMPORT_ERROR))
    assert proc.returncode == 0
    assert "Note:" not in proc.stdout


def test_p_no_name_hides_the_broken_plugin_from_the_help_note_in_process(
    installed: Callable[[Case], Installed], cli: Callable[..., CliResult]
) -> None:
    """The same through ``run_cli`` / ``aliquot.cli.main(argv)``: -p comes from argv."""
    result = cli(installed(IMPORT_ERROR), "-p", f"no:{IMPORT_ERROR.blamed}", "--help")
    assert result.exit_code == 0
    assert "Note:" not in result.stdout


# ---------------------------------------------------------------- blocking: before import, builtins

MARKER_PLUGIN = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

import aliquot

@aliquot.hookimpl
def aliquot_register_executors(register):
    pass
"""


def test_cli_blocks_before_import_and_autoload_off_skips_third_party(
    make_dist: Callable[..., Path], tmp_path: Path
) -> None:
    """A plugin blocked with ``-p no:NAME`` or ALIQUOT_DISABLE_PLUGINS is never imported (its
    import writes a marker file), by ``plugins``, ``--help`` or ``run``; with autoload off,
    third-party entry points are not imported and the builtins are."""
    marker = tmp_path / "imported.txt"
    at = install({"marker": MARKER_PLUGIN.format(marker=str(marker))}, make_dist, tmp_path)

    proc = aliquot_cli("-p", "no:marker", "plugins", "--json", at=at)
    info = {i["name"]: i for i in json.loads(proc.stdout)}["marker"]
    assert (info["status"], info["distribution"], info["version"]) == (
        "blocked",
        "aqp-marker",
        VERSION,
    )
    proc = aliquot_cli("-p", "no:marker", "--help", at=at)
    assert proc.returncode == 0
    proc = aliquot_cli("run", "tasks.py", at=at, env={"ALIQUOT_DISABLE_PLUGINS": "marker"})
    assert proc.returncode == 0, proc.stderr
    proc = aliquot_cli("plugins", "--json", at=at, env={"ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    infos = {i["name"]: i for i in json.loads(proc.stdout)}
    assert "marker" not in infos
    for name in BUILTINS:
        assert infos[name]["status"] == "loaded", infos[name]
    assert not marker.exists()

    proc = aliquot_cli("plugins", "--json", at=at)  # the control: unblocked, it is imported
    assert {i["name"]: i for i in json.loads(proc.stdout)}["marker"]["status"] == "loaded"
    assert marker.exists()


def test_cli_blocking_the_json_builtin_stores_values_with_pickle(
    make_dist: Callable[..., Path], tmp_path: Path
) -> None:
    """``-p no:serializer_json``: ``aliquot plugins`` shows the builtin blocked and a run whose
    value would be JSON still succeeds, stored by the signed pickle serializer."""
    at = install({}, make_dist, tmp_path)
    proc = aliquot_cli("-p", "no:serializer_json", "plugins", "--json", at=at)
    info = {i["name"]: i for i in json.loads(proc.stdout)}["serializer_json"]
    assert (info["status"], info["builtin"], info["distribution"]) == ("blocked", True, "aliquot")
    proc = aliquot_cli("-p", "no:serializer_json", "run", "dict_tasks.py", "--json", at=at)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["status"] == "succeeded"
    (node,) = run["nodes"]
    assert node["outputs"]["data"]["serializer"] == "pickle"
    assert "serializer_json" not in [p["name"] for p in run["plugins"]]


def test_cli_run_says_when_no_serializer_is_left_for_a_value(
    make_dist: Callable[..., Path], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """With json and pickle blocked, ``aliquot run`` tells the user the value was not stored."""
    at = install({}, make_dist, tmp_path)
    blocks = ("-p", "no:serializer_json", "-p", "no:serializer_pickle")
    result = cli(at, *blocks, "run", "dict_tasks.py")
    assert "not stored" in result.stderr, result


def test_cli_blocking_the_function_builtin_refuses_to_run_tasks_naming_it(
    make_dist: Callable[..., Path], tmp_path: Path
) -> None:
    """``-p no:function``: the script with ``@aliquot.task`` imports fine, but running it
    exits 2 with one line naming the plugin ``function`` as blocked."""
    at = install({}, make_dist, tmp_path)
    proc = aliquot_cli("-p", "no:function", "run", "tasks.py", at=at)
    line = assert_one_error_line(proc, "'function'", "function (blocked)", "-p no:function")
    assert "tasks.py" not in line  # not an import failure of the script


# ---------------------------------------------------------------- -p, ALIQUOT_PLUGINS, manifest

PLAIN_PLUGIN = """
import aliquot

@aliquot.hookimpl
def aliquot_register_executors(register):
    pass
"""
GOOD_PLUGIN = """
import aliquot

@aliquot.hookimpl
def aliquot_register_executors(register):
    pass

@aliquot.hookimpl
def aliquot_run_finished(run):
    pass
"""


@pytest.fixture(scope="module")
def with_extras(
    make_dist: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Installed:
    """An installed plugin ``good`` (aqp-good 3.1.4) and a plain module ``aqp_plain``."""
    at = install({}, make_dist, tmp_path_factory.mktemp("extras"))
    site = make_dist(
        "aqp-good",
        "3.1.4",
        entry_points={"good": "aqp_good"},
        modules={"aqp_good": GOOD_PLUGIN, "aqp_plain": PLAIN_PLUGIN},
    )
    return Installed((site,), at.cwd)


@pytest.mark.parametrize("how", ["-p", "ALIQUOT_PLUGINS"])
def test_cli_loads_a_plain_module_named_by_p_or_aliquot_plugins(
    how: str, with_extras: Installed
) -> None:
    """``-p MODULE`` and ALIQUOT_PLUGINS=MODULE load a module that is not an entry point."""
    if how == "-p":
        proc = aliquot_cli("-p", "aqp_plain", "plugins", "--json", at=with_extras)
    else:
        proc = aliquot_cli("plugins", "--json", at=with_extras, env={how: "aqp_plain"})
    assert proc.returncode == 0, proc.stderr
    info = {i["name"]: i for i in json.loads(proc.stdout)}["aqp_plain"]
    assert (info["status"], info["source"], info["distribution"], info["module"]) == (
        "loaded",
        how,
        None,
        "aqp_plain",
    )
    assert info["hooks"] == ["aliquot_register_executors"]


def test_cli_show_json_lists_every_loaded_plugin(with_extras: Installed) -> None:
    """``aliquot show RUN --json`` has "plugins": every loaded plugin with name, distribution,
    version and hooks (builtins, autoloaded entry points and ``-p`` modules)."""
    options = ("-p", "aqp_plain", "-p", "no:store_memory")
    proc = aliquot_cli(*options, "run", "tasks.py", at=with_extras)
    assert proc.returncode == 0, proc.stderr
    proc = aliquot_cli("show", "latest", "--json", at=with_extras)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert set(BUILTINS) - {"store_memory"} <= set(plugins)
    assert "store_memory" not in plugins
    for entry in plugins.values():
        assert entry["status"] == "loaded"
        assert {"name", "distribution", "version", "hooks"} <= set(entry)
    assert (plugins["good"]["distribution"], plugins["good"]["version"]) == ("aqp-good", "3.1.4")
    assert plugins["good"]["hooks"] == ["aliquot_register_executors", "aliquot_run_finished"]
    assert (plugins["function"]["distribution"], plugins["function"]["version"]) == (
        "aliquot",
        aliquot.__version__,
    )
    assert plugins["function"]["hooks"] == ["aliquot_register_task_types"]
    assert plugins["aqp_plain"]["source"] == "-p"
