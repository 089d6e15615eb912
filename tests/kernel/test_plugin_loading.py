"""Loading plugins: the order, blocking, and what a broken plugin does to a kernel.

The contract is in DESIGN.md ("Loading plugins", "Hooks") and in the docstring
of ``aliquot/_plugins.py``. Every broken plugin here is a real installed
distribution (``make_dist``) found through ``importlib_metadata`` on ``sys.path``.
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
from aliquot import Kernel, PluginLoadError, PluginNotActiveError
from aliquot._plugins import PluginManager
from aliquot.testing import HookRecorder, make_kernel

VERSION = "2.7.1"
BUILTINS = (
    "executor_inline",
    "executor_processes",
    "executor_threads",
    "function",
    "serializer_bytes",
    "serializer_json",
    "serializer_numpy",
    "serializer_pickle",
    "store_lmdb",
    "store_memory",
)

# ---------------------------------------------------------------- tasks used by runs


@aliquot.task(outputs=["doubled"])
def double(x: int) -> int:
    return 2 * x


@aliquot.task(outputs=["data"])
def make_dict() -> dict[str, list[int]]:
    return {"n": [1, 2, 3]}


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
    """A broken plugin: one distribution ``aqp-NAME`` per entry point, in sys.path order."""

    id: str
    plugins: dict[str, str]  # entry-point name -> module source
    blamed: str  # the plugin the error is attributed to
    cause: tuple[str, ...]  # substrings of the cause
    stage: str = "import"

    def param(self, check: str = "") -> object:
        marks = []
        return pytest.param(self, id=self.id, marks=marks)


NO_ENTRY_POINT = (
    "BUG: errors found while registering (pluggy validation, async/wrapper hooks) are "
    "built in PluginManager._register without entry_point=info.entry_point, so the message "
    "does not name the entry point (DESIGN.md: it names the entry point)"
)

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
        stage="hook check",
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
        stage="registration",
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
        stage="registration",
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
        stage="registration",
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
        stage="aliquot_register_serializers",
    ),
    # dup_first comes first on sys.path, so it is registered first and called
    # last (pluggy calls later plugins first): its register() is the conflict.
    Case(
        "duplicate_serializer",
        {
            "dup_first": SERIALIZER.format(name="dup", replace=False),
            "dup_second": SERIALIZER.format(name="dup", replace=False),
        },
        "dup_first",
        ("RegistrationError", "conflicts", "'dup_first'", "'dup_second'", "'dup'"),
        stage="aliquot_register_serializers",
    ),
]
LOAD_TIME_CASES = [c for c in CASES if not c.stage.startswith("aliquot_register")]


def install(case: Case, make_dist: Callable[..., Path], root: Path) -> list[Path]:
    """Install the case's distributions, one site per distribution, in sys.path order."""
    sites = []
    for index, (name, source) in enumerate(case.plugins.items()):
        site = root / f"site{index}-{name}"
        make_dist(
            f"aqp-{name}",
            VERSION,
            entry_points={name: f"aqp_{name}"},
            modules={f"aqp_{name}": source},
            site=site,
        )
        sites.append(site)
    return sites


@pytest.fixture
def activate(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None], tmp_path: Path
) -> Callable[[Case], None]:
    """``activate(case)``: install the case and put its sites on sys.path (first one first)."""

    def do(case: Case) -> None:
        for site in reversed(install(case, make_dist, tmp_path / case.id)):
            sys_path(site)

    return do


def open_kernel_with(opener: str, **kwargs: object) -> Kernel:
    if opener == "Kernel.open":
        return Kernel.open("memory://", env={}, **kwargs)  # type: ignore[arg-type]
    return make_kernel(autoload=True, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- broken plugins: the kernel


@pytest.mark.parametrize("opener", ["Kernel.open", "make_kernel"])
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_broken_plugin_refuses_kernel_with_name_distribution_and_cause(
    case: Case, opener: str, activate: Callable[[Case], None]
) -> None:
    """A broken plugin makes opening a kernel raise PluginLoadError naming the plugin,
    its distribution and version, the cause, and the escape hatch ``-p no:NAME``."""
    activate(case)
    with pytest.raises(PluginLoadError) as info:
        open_kernel_with(opener)
    error = info.value
    message = str(error)
    assert error.name == case.blamed
    assert (error.distribution, error.version) == (f"aqp-{case.blamed}", VERSION)
    assert error.stage == case.stage
    assert f"plugin {case.blamed!r}" in message
    assert f"distribution aqp-{case.blamed} {VERSION}" in message
    for cause in case.cause:
        assert cause in message
    assert f"`-p no:{case.blamed}`" in message
    assert f"ALIQUOT_DISABLE_PLUGINS={case.blamed}" in message


@pytest.mark.parametrize("case", [c.param("entry_point") for c in CASES])
def test_load_error_names_the_entry_point(case: Case, activate: Callable[[Case], None]) -> None:
    """The PluginLoadError message names the entry point (``NAME = module``)."""
    activate(case)
    with pytest.raises(PluginLoadError) as info:
        make_kernel(autoload=True)
    assert f"entry point {case.blamed} = aqp_{case.blamed}" in str(info.value)
    assert info.value.entry_point == f"aqp_{case.blamed}"


@pytest.mark.parametrize("case", [c.param() for c in LOAD_TIME_CASES])
def test_broken_plugin_is_recorded_and_the_others_still_load(
    case: Case, activate: Callable[[Case], None]
) -> None:
    """Every plugin is loaded on its own: the broken one is recorded (status, distribution,
    version, cause) and every builtin still loads."""
    activate(case)
    manager = PluginManager()
    manager.load(env={})
    info = manager.infos[case.blamed]
    assert info.status == "error"
    assert (info.distribution, info.version) == (f"aqp-{case.blamed}", VERSION)
    assert info.builtin is False
    assert info.error is not None
    for cause in case.cause:
        assert cause in info.error
    assert [e.name for e in manager.errors] == [case.blamed]
    for name in BUILTINS:
        assert manager.infos[name].status in ("loaded", "unavailable"), manager.infos[name]
    assert case.blamed not in [p["name"] for p in manager.manifest()]


@pytest.mark.parametrize(
    "how", ["block", "ALIQUOT_DISABLE_PLUGINS", "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD"]
)
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_blocking_a_broken_plugin_lets_the_kernel_run(
    case: Case, how: str, activate: Callable[[Case], None]
) -> None:
    """``block=[NAME]``, ALIQUOT_DISABLE_PLUGINS=NAME and ALIQUOT_DISABLE_PLUGIN_AUTOLOAD=1
    each recover: the kernel opens and runs."""
    activate(case)
    block = [case.blamed] if how == "block" else []
    env = {} if how == "block" else {how: case.blamed if how == "ALIQUOT_DISABLE_PLUGINS" else "1"}
    with Kernel.open("memory://", block=block, env=env) as kernel:
        run = kernel.run(double, inputs={"x": 21})
    assert run.status == "succeeded"
    assert run["doubled"] == 42
    infos = {i.name: i for i in kernel.plugins}
    if how == "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD":
        assert case.blamed not in infos
    else:
        assert infos[case.blamed].status == "blocked"
        assert infos[case.blamed].distribution == f"aqp-{case.blamed}"


def test_sys_exit_at_import_does_not_end_the_process(activate: Callable[[Case], None]) -> None:
    """A plugin calling sys.exit() at import is a load error, never a SystemExit."""
    activate(next(c for c in CASES if c.id == "exits_at_import"))
    with pytest.raises(PluginLoadError) as info:
        make_kernel(autoload=True)
    assert isinstance(info.value.__cause__, SystemExit)


def test_plugin_unavailable_is_skipped_not_an_error(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None]
) -> None:
    """``raise aliquot.PluginUnavailable("needs foo")`` lists the plugin as unavailable with
    the reason; it is not an error and runs still work."""
    source = "import aliquot\nraise aliquot.PluginUnavailable('needs foo')\n"
    sys_path(
        make_dist(
            "aqp-optional",
            VERSION,
            entry_points={"optional": "aqp_optional"},
            modules={"aqp_optional": source},
        )
    )
    with make_kernel(autoload=True) as kernel:
        run = kernel.run(double, inputs={"x": 1})
    assert run.status == "succeeded"
    info = {i.name: i for i in kernel.plugins}["optional"]
    assert info.status == "unavailable"
    assert info.error == "needs foo"
    assert (info.distribution, info.version) == ("aqp-optional", VERSION)
    assert "optional" not in [p["name"] for p in run.plugins]


# ---------------------------------------------------------------- duplicates and replace=True


@pytest.mark.parametrize("replacer", ["dup_first", "dup_second"])
def test_replace_true_resolves_a_duplicate_name_and_is_recorded(
    replacer: str,
    make_dist: Callable[..., Path],
    sys_path: Callable[[Path], None],
    tmp_path: Path,
) -> None:
    """Two plugins registering one serializer name are accepted when one passes
    ``replace=True``, whichever is called first; the registry shows who replaced whom."""
    other = "dup_second" if replacer == "dup_first" else "dup_first"
    case = Case(
        "replace",
        {
            name: SERIALIZER.format(name="dup", replace=name == replacer)
            for name in ("dup_first", "dup_second")
        },
        replacer,
        (),
    )
    for site in reversed(install(case, make_dist, tmp_path)):
        sys_path(site)
    with make_kernel(autoload=True) as kernel:
        entry = kernel.serializer_registry.entry("dup")
        assert (entry.plugin, entry.replace, entry.replaced) == (replacer, True, other)
        assert type(kernel.serializers.get("dup")).__module__ == f"aqp_{replacer}"


def test_run_manifest_records_a_replacing_registration(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """The run manifest shows that a plugin replaced another plugin's registration."""
    case = Case(
        "replace",
        {
            "dup_first": SERIALIZER.format(name="dup", replace=True),
            "dup_second": SERIALIZER.format(name="dup", replace=False),
        },
        "dup_first",
        (),
    )
    for site in reversed(install(case, make_dist, tmp_path)):
        sys_path(site)
    with make_kernel(autoload=True) as kernel:
        run = kernel.run(double, inputs={"x": 1})
    entry = next(p for p in run.plugins if p["name"] == "dup_first")
    assert '"dup_second"' in json.dumps(entry)


# ---------------------------------------------------------------- blocking


MARKER_PLUGIN = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

import aliquot

@aliquot.hookimpl
def aliquot_register_executors(register):
    pass
"""


@pytest.mark.parametrize(
    "how", ["block", "ALIQUOT_DISABLE_PLUGINS", "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD", "not blocked"]
)
def test_blocking_happens_before_import(
    how: str, make_dist: Callable[..., Path], sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """A blocked plugin is never imported (its import would write a marker file); with
    autoload off, third-party entry points are not imported but every builtin is loaded."""
    marker = tmp_path / "imported.txt"
    sys_path(
        make_dist(
            "aqp-marker",
            VERSION,
            entry_points={"marker": "aqp_marker"},
            modules={"aqp_marker": MARKER_PLUGIN.format(marker=str(marker))},
        )
    )
    env = {
        "block": {},
        "not blocked": {},
        "ALIQUOT_DISABLE_PLUGINS": {"ALIQUOT_DISABLE_PLUGINS": "other, marker"},
        "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": {"ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"},
    }[how]
    block = ["marker"] if how == "block" else []
    with Kernel.open("memory://", block=block, env=env) as kernel:
        infos = {i.name: i for i in kernel.plugins}
    assert marker.exists() is (how == "not blocked")
    if how in ("block", "ALIQUOT_DISABLE_PLUGINS"):
        assert infos["marker"].status == "blocked"
        assert (infos["marker"].distribution, infos["marker"].version) == ("aqp-marker", VERSION)
    elif how == "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD":
        assert "marker" not in infos
    else:
        assert infos["marker"].status == "loaded"
    for name in BUILTINS:
        assert infos[name].status in ("loaded", "unavailable")


def test_blocked_p_module_is_not_imported(sys_path: Callable[[Path], None], tmp_path: Path) -> None:
    """``load=[MODULE]`` together with ``block=[MODULE]``: blocked, never imported."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "aqp_plain_marker.py").write_text(MARKER_PLUGIN.format(marker=str(marker)))
    sys_path(tmp_path)
    with make_kernel(load=["aqp_plain_marker"], block=["aqp_plain_marker"]) as kernel:
        info = {i.name: i for i in kernel.plugins}["aqp_plain_marker"]
    assert info.status == "blocked"
    assert not marker.exists()


def test_builtin_serializer_can_be_blocked_and_values_fall_back_to_pickle(tmp_path: Path) -> None:
    """Blocking serializer_json removes ``json``; a dict is then stored with the signed
    pickle serializer and loads back from the store."""
    store = str(tmp_path / "store")
    with make_kernel(block=["serializer_json"], store=store) as kernel:
        info = {i.name: i for i in kernel.plugins}["serializer_json"]
        assert (info.status, info.builtin, info.distribution) == ("blocked", True, "aliquot")
        assert "json" not in kernel.serializer_registry
        assert "serializer_json" not in [p["name"] for p in kernel.manifest()]
        run = kernel.run(make_dict)
    assert run.status == "succeeded"
    (record,) = run.nodes.values()
    assert record.outputs["data"].serializer == "pickle"
    with make_kernel(block=["serializer_json"], store=store) as kernel:
        assert kernel.get_run(run.id)["data"] == {"n": [1, 2, 3]}


def test_blocking_every_serializer_of_a_value_is_reported_on_the_run() -> None:
    """With json and pickle blocked nothing can store a dict: the run says so in its
    warnings (the value is not silently dropped)."""
    with make_kernel(block=["serializer_json", "serializer_pickle"]) as kernel:
        run = kernel.run(make_dict)
    (record,) = run.nodes.values()
    assert record.outputs == {}
    assert any("not stored" in w and "no serializer" in w for w in run.warnings), run.warnings


def test_blocking_the_function_builtin_fails_runs_naming_the_plugin() -> None:
    """With ``function`` blocked, declaring a task still works, but planning or running it
    fails with PluginNotActiveError naming the plugin ``function`` and saying it is blocked."""
    with make_kernel(block=["function"]) as kernel:

        @aliquot.task(outputs=["late"])
        def declared_while_blocked() -> int:
            return 1

        for attempt in (kernel.plan, kernel.run):
            with pytest.raises(PluginNotActiveError) as info:
                attempt(declared_while_blocked)
            message = str(info.value)
            assert "'function'" in message
            assert "function (blocked)" in message
            assert "-p no:function" in message
    assert "function" not in kernel.task_types


# ---------------------------------------------------------------- -p, ALIQUOT_PLUGINS, order

PLAIN_PLUGIN = """
import aliquot

class Tag:
    version = "1"
    types = ()
    def __init__(self, name):
        self.name = name
    def dumps(self, value, ctx):
        return b""
    def loads(self, data, ctx):
        return None

@aliquot.hookimpl
def aliquot_register_serializers(register):
    register(Tag({tag!r}))
"""


def test_p_loads_a_plain_module_that_is_not_an_entry_point(
    sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """``load=[MODULE]`` (``-p MODULE``) imports and registers a module found on sys.path."""
    (tmp_path / "aqp_plain.py").write_text(PLAIN_PLUGIN.format(tag="plain"))
    sys_path(tmp_path)
    with make_kernel(load=["aqp_plain"]) as kernel:
        info = {i.name: i for i in kernel.plugins}["aqp_plain"]
        assert "plain" in kernel.serializer_registry
        assert kernel.serializer_registry.entry("plain").plugin == "aqp_plain"
    assert (info.status, info.source, info.distribution, info.module) == (
        "loaded",
        "-p",
        None,
        "aqp_plain",
    )
    assert info.hooks == ("aliquot_register_serializers",)


def test_aliquot_plugins_env_loads_modules(
    sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """ALIQUOT_PLUGINS=a,b loads each module, recorded with source ALIQUOT_PLUGINS."""
    (tmp_path / "aqp_env_a.py").write_text(PLAIN_PLUGIN.format(tag="env_a"))
    (tmp_path / "aqp_env_b.py").write_text(PLAIN_PLUGIN.format(tag="env_b"))
    sys_path(tmp_path)
    with make_kernel(env={"ALIQUOT_PLUGINS": "aqp_env_a, aqp_env_b"}) as kernel:
        infos = {i.name: i for i in kernel.plugins}
        assert {"env_a", "env_b"} <= set(kernel.serializer_registry)
    for name in ("aqp_env_a", "aqp_env_b"):
        assert (infos[name].status, infos[name].source) == ("loaded", "ALIQUOT_PLUGINS")


def test_p_loads_an_entry_point_even_with_autoload_off(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None]
) -> None:
    """``-p NAME`` names an entry point: it loads with its distribution even without autoload."""
    sys_path(
        make_dist(
            "aqp-named",
            VERSION,
            entry_points={"named": "aqp_named"},
            modules={"aqp_named": PLAIN_PLUGIN.format(tag="named")},
        )
    )
    with make_kernel(load=["named"], autoload=False) as kernel:
        info = {i.name: i for i in kernel.plugins}["named"]
        assert "named" in kernel.serializer_registry
    assert (info.status, info.source, info.distribution, info.version) == (
        "loaded",
        "-p",
        "aqp-named",
        VERSION,
    )


def test_p_with_an_unknown_name_is_an_error_naming_it() -> None:
    """``-p NAME`` that is neither an entry point nor a module is a load error saying so."""
    with pytest.raises(PluginLoadError) as info:
        make_kernel(load=["aqp_no_such_plugin_anywhere"])
    assert "aqp_no_such_plugin_anywhere" in str(info.value)
    assert "no entry point and no module of that name" in str(info.value)


def test_p_module_with_a_missing_dependency_is_not_called_missing(
    sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """A ``-p`` module that exists but imports a missing package is reported as such."""
    (tmp_path / "aqp_needs_dep.py").write_text("import aqp_not_installed_dep\n")
    sys_path(tmp_path)
    with pytest.raises(PluginLoadError) as info:
        make_kernel(load=["aqp_needs_dep"])
    assert "aqp_not_installed_dep" in str(info.value)
    assert "no module of that name" not in str(info.value)


def test_p_with_the_module_of_an_installed_plugin_loads_it_once(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None]
) -> None:
    """Naming an installed plugin by its module with ``-p`` does not make it fail."""
    sys_path(
        make_dist(
            "aqp-twice",
            VERSION,
            entry_points={"twice": "aqp_twice"},
            modules={"aqp_twice": PLAIN_PLUGIN.format(tag="twice")},
        )
    )
    with make_kernel(load=["aqp_twice"], autoload=True) as kernel:
        assert kernel.serializer_registry.entry("twice").plugin in ("twice", "aqp_twice")


def test_loading_order_builtins_then_p_and_objects_then_autoload_then_env(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """Plugins are registered in the documented order -- builtins, ``-p``, plugin objects,
    autoloaded entry points, ALIQUOT_PLUGINS -- so pluggy calls every third-party
    registration hook before the (trylast) builtins, later-registered first."""
    sys_path(
        make_dist(
            "aqp-auto",
            VERSION,
            entry_points={"auto": "aqp_auto"},
            modules={
                "aqp_auto": PLAIN_PLUGIN.format(tag="auto"),
                "aqp_cli": PLAIN_PLUGIN.format(tag="cli"),
                "aqp_env": PLAIN_PLUGIN.format(tag="env"),
            },
        )
    )

    class ObjectPlugin:
        __name__ = "object_plugin"

        @aliquot.hookimpl
        def aliquot_register_serializers(self, register: Callable[..., None]) -> None:
            pass

    recorder = HookRecorder()
    with make_kernel(
        [ObjectPlugin()],
        load=["aqp_cli"],
        autoload=True,
        env={"ALIQUOT_PLUGINS": "aqp_env"},
        recorder=recorder,
    ) as kernel:
        registered = [name for name, _ in kernel._plugins.pluggy.list_name_plugin()]
        listed = [i.name for i in kernel.plugins]
        builtins = [i.name for i in kernel.plugins if i.builtin and i.status == "loaded"]
    third_party = ["aqp_cli", "object_plugin", "auto", "aqp_env"]
    assert registered == listed
    assert set(BUILTINS) - {"serializer_numpy"} <= set(builtins)
    # Other installed distributions' plugins (contrib packages) autoload too, among "auto".
    installed = [n for n in registered if n not in builtins and n not in third_party]
    known = [n for n in registered if n not in installed]
    assert known == [*builtins, *third_party]
    autoloaded = registered[registered.index("object_plugin") + 1 : registered.index("aqp_env")]
    assert set(autoloaded) == {"auto", *installed}
    called = [call.plugin for call in recorder.getcalls("register_serializers")]
    called = [name for name in called if name not in installed]
    assert called[:4] == list(reversed(third_party))
    assert all(name.startswith("serializer_") or name == "artifacts" for name in called[4:])


REPLACING_JSON = """
import aliquot
import orjson

CALLS = []

class FastJson:
    name = "json"
    version = "fast-1"
    types = (dict,)
    def dumps(self, value, ctx):
        CALLS.append(value)
        return orjson.dumps(value)
    def loads(self, data, ctx):
        return orjson.loads(bytes(data))

@aliquot.hookimpl
def aliquot_register_serializers(register):
    register(FastJson(), replace={replace!r})
"""


def test_third_party_serializer_with_replace_wins_over_the_builtin(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """A third-party ``json`` serializer registered with replace=True overrides the builtin
    (builtins are trylast): values are written with it and the registry says so."""
    sys_path(
        make_dist(
            "aqp-fastjson",
            VERSION,
            entry_points={"fastjson": "aqp_fastjson"},
            modules={"aqp_fastjson": REPLACING_JSON.format(replace=True)},
        )
    )
    with make_kernel(autoload=True, store=str(tmp_path / "store")) as kernel:
        entry = kernel.serializer_registry.entry("json")
        assert (entry.plugin, entry.replaced) == ("fastjson", "serializer_json")
        assert entry.replace is True
        run = kernel.run(make_dict)
        assert kernel.get_run(run.id)["data"] == {"n": [1, 2, 3]}
    (record,) = run.nodes.values()
    assert (record.outputs["data"].serializer, record.outputs["data"].serializer_version) == (
        "json",
        "fast-1",
    )
    assert sys.modules["aqp_fastjson"].CALLS == [{"n": [1, 2, 3]}]


def test_third_party_serializer_without_replace_conflicts_with_the_builtin(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None]
) -> None:
    """Without replace=True, a duplicate of a builtin's name is a RegistrationError that
    names both plugins."""
    sys_path(
        make_dist(
            "aqp-fastjson",
            VERSION,
            entry_points={"fastjson": "aqp_fastjson"},
            modules={"aqp_fastjson": REPLACING_JSON.format(replace=False)},
        )
    )
    with pytest.raises(PluginLoadError) as info:
        make_kernel(autoload=True)
    message = str(info.value)
    assert "RegistrationError" in message
    assert "'fastjson'" in message
    assert "'serializer_json'" in message


# ---------------------------------------------------------------- check_pending


def test_check_pending_catches_a_misspelt_hook_on_a_plugin_object() -> None:
    """A plugin object with a misspelt hook is a load error naming the hook and the
    right name; nothing else of it is registered."""

    class Observer:
        __name__ = "observer"

        @aliquot.hookimpl
        def aliquot_run_finish(self, run: object) -> None:
            pass

    with pytest.raises(PluginLoadError) as info:
        make_kernel([Observer()])
    assert info.value.name == "observer"
    assert info.value.stage == "hook check"
    assert "unknown hook 'aliquot_run_finish' (did you mean 'aliquot_run_finished'?)" in str(
        info.value
    )


def test_optionalhook_with_an_unknown_name_is_accepted() -> None:
    """``@hookimpl(optionalhook=True)`` on a hook aliquot does not define is not an error."""

    class Optional:
        __name__ = "optional_hooks"

        @aliquot.hookimpl(optionalhook=True)
        def aliquot_some_future_event(self) -> None:
            pass

    with make_kernel([Optional()]) as kernel:
        info = {i.name: i for i in kernel.plugins}["optional_hooks"]
    assert info.status == "loaded"


# ---------------------------------------------------------------- manifest


GOOD_PLUGIN = """
import aliquot

FINISHED = []

@aliquot.hookimpl
def aliquot_register_executors(register):
    pass

@aliquot.hookimpl
def aliquot_run_finished(run):
    FINISHED.append(run.id)
"""


def test_run_manifest_lists_every_loaded_plugin(
    make_dist: Callable[..., Path], sys_path: Callable[[Path], None], tmp_path: Path
) -> None:
    """``run.plugins`` lists every loaded plugin -- and only those -- with name,
    distribution, version and hooks, and is stored with the run."""
    sys_path(
        make_dist(
            "aqp-good",
            "3.1.4",
            entry_points={"good": "aqp_good"},
            modules={"aqp_good": GOOD_PLUGIN, "aqp_plain": PLAIN_PLUGIN.format(tag="plain")},
        )
    )
    store = str(tmp_path / "store")
    with make_kernel(autoload=True, load=["aqp_plain"], block=["store_memory"], store=store) as k:
        run = k.run(double, inputs={"x": 2})
        loaded = {i.name for i in k.plugins if i.status == "loaded"}
    manifest = {p["name"]: p for p in run.plugins}
    assert set(manifest) == loaded
    assert {"good", "aqp_plain", "serializer_json", "function"} <= loaded
    assert "store_memory" not in manifest
    for entry in manifest.values():
        assert {"name", "distribution", "version", "hooks"} <= set(entry)
    good = manifest["good"]
    assert (good["distribution"], good["version"]) == ("aqp-good", "3.1.4")
    assert good["hooks"] == ["aliquot_register_executors", "aliquot_run_finished"]
    builtin = manifest["serializer_json"]
    assert (builtin["distribution"], builtin["version"], builtin["builtin"]) == (
        "aliquot",
        aliquot.__version__,
        True,
    )
    assert builtin["hooks"] == ["aliquot_register_serializers"]
    assert manifest["aqp_plain"]["distribution"] is None
    finished = sys.modules["aqp_good"].FINISHED
    assert finished == [run.id]
    with make_kernel(autoload=True, load=["aqp_plain"], block=["store_memory"], store=store) as k:
        assert k.get_run(run.id).plugins == run.plugins


# ---------------------------------------------------------------- isolation


def test_import_aliquot_imports_no_plugin(make_dist: Callable[..., Path], tmp_path: Path) -> None:
    """``import aliquot`` imports no builtin, no third-party plugin and not trio; plugins
    are imported only when a kernel (or the CLI) loads them."""
    marker = tmp_path / "imported.txt"
    site = make_dist(
        "aqp-marker",
        VERSION,
        entry_points={"marker": "aqp_marker"},
        modules={"aqp_marker": MARKER_PLUGIN.format(marker=str(marker))},
    )
    code = (
        "import json, sys\n"
        "import aliquot\n"
        "first = sorted(sys.modules)\n"
        "import aliquot.cli\n"
        "aliquot.hookimpl, aliquot.PluginLoadError, aliquot.Kernel\n"
        "print(json.dumps([first, sorted(sys.modules)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    after_import, after_use = json.loads(proc.stdout)
    assert not [m for m in after_import if m.startswith(("aliquot_builtins", "aqp_", "trio"))]
    assert not [m for m in after_use if m.startswith(("aliquot_builtins", "aqp_"))]
    assert not marker.exists()


def test_two_kernels_have_independent_plugin_managers() -> None:
    """A plugin object given to one kernel is registered, called and listed in that kernel
    only; each kernel owns its own pluggy manager."""

    class Tag:
        name = "only_in_a"
        version = "1"
        types = ()

        def dumps(self, value: object, ctx: object) -> bytes:
            return b""

        def loads(self, data: object, ctx: object) -> None:
            return None

    class OnlyInA:
        __name__ = "only_in_a"

        def __init__(self) -> None:
            self.finished: list[str] = []

        @aliquot.hookimpl
        def aliquot_register_serializers(self, register: Callable[..., None]) -> None:
            register(Tag())

        @aliquot.hookimpl
        def aliquot_run_finished(self, run: aliquot.Run) -> None:
            self.finished.append(run.id)

    plugin = OnlyInA()
    with make_kernel([plugin]) as a, make_kernel() as b:
        assert a._plugins.pluggy is not b._plugins.pluggy
        assert "only_in_a" in a.serializer_registry
        assert "only_in_a" not in b.serializer_registry
        assert "only_in_a" in [i.name for i in a.plugins]
        assert "only_in_a" not in [i.name for i in b.plugins]
        run_b = b.run(double, inputs={"x": 1})
        assert plugin.finished == []
        run_a = a.run(double, inputs={"x": 1})
        assert plugin.finished == [run_a.id]
    assert "only_in_a" in [p["name"] for p in run_a.plugins]
    assert "only_in_a" not in [p["name"] for p in run_b.plugins]
