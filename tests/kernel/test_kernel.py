"""The Kernel: opening, stores, executors, stored runs, crash detection, the facade."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

import aliquot
from aliquot.testing import make_kernel


@aliquot.task(outputs=["value"])
def value(x: int = 1) -> int:
    return x * 10


def test_open_creates_an_lmdb_store_and_runs(store_path: Path) -> None:
    kernel = aliquot.Kernel.open(store_path)
    try:
        run = kernel.run([value], inputs={"x": 2})
    finally:
        kernel.close()
    assert run["value"] == 20
    assert (store_path / "index" / "data.mdb").exists()
    assert (store_path / "blobs").is_dir()


def test_memory_store_keeps_nothing_between_kernels() -> None:
    with aliquot.Kernel.open("memory://") as first:
        first.run([value])
        assert len(first.runs()) == 1
    with aliquot.Kernel.open("memory://") as second:
        assert second.runs() == []


def test_unknown_store_scheme_is_refused_with_known_names() -> None:
    with pytest.raises(
        aliquot.UnknownNameError, match=r"unknown store 'nosuch' \(known: lmdb, memory\)"
    ):
        aliquot.Kernel.open("nosuch://somewhere")


def test_unknown_executor_is_refused_before_running() -> None:
    with make_kernel() as kernel:
        with pytest.raises(aliquot.UnknownNameError, match="unknown executor 'gpu'"):
            kernel.run([value], executor="gpu")
        with pytest.raises(aliquot.AliquotError, match="N must be"):
            kernel.run([value], executor="threads:zero")
        with pytest.raises(aliquot.AliquotError, match="between 1 and 4096"):
            kernel.run([value], executor="threads:0")
        assert kernel.runs() == []


def test_a_bad_default_executor_is_refused_when_the_kernel_opens() -> None:
    with pytest.raises(aliquot.UnknownNameError, match="unknown executor 'gpu'"):
        make_kernel(executor="gpu")
    with pytest.raises(aliquot.AliquotError, match="NAME or NAME:N"):
        make_kernel(executor=":3")
    with make_kernel(executor="threads:2") as kernel:
        assert kernel.run([value]).executor == "threads:2"


def test_blocked_executor_plugin_is_named_in_the_error() -> None:
    with make_kernel(block=["executor_threads"]) as kernel:
        with pytest.raises(aliquot.UnknownNameError, match="executor_threads \\(blocked"):
            kernel.run([value], executor="threads")


def test_blocked_task_type_plugin_names_the_plugin() -> None:
    """A blocked builtin: declarations import, running them names the plugin."""
    with make_kernel(block=["function"]) as kernel:
        with pytest.raises(
            aliquot.PluginNotActiveError, match=r"task type 'function'.*function \(blocked"
        ):
            kernel.run([value])


def test_per_task_executor_option() -> None:
    import threading

    @aliquot.task(outputs=["thread_name"], executor="threads:1")
    def in_thread() -> str:
        return threading.current_thread().name

    @aliquot.task(outputs=["main_name"])
    def in_main(thread_name: str) -> str:
        return threading.current_thread().name

    with make_kernel() as kernel:
        run = kernel.run([in_thread, in_main], targets=["thread_name", "main_name"])
    assert run["thread_name"] != run["main_name"]
    assert run["main_name"] == threading.main_thread().name


def test_runs_are_listed_newest_first_and_resolved_by_prefix(store_path: Path) -> None:
    with aliquot.Kernel.open(store_path) as kernel:
        ids = [kernel.run([value], inputs={"x": i}).id for i in range(3)]
        listed = [h["id"] for h in kernel.runs()]
        assert listed == ids[::-1]
        assert kernel.get_run("latest").id == ids[-1]
        assert kernel.get_run("-2").id == ids[1]
        assert kernel.get_run("latest~1").id == ids[1]
        assert kernel.get_run("latest~2").id == ids[0]
        assert kernel.get_run(ids[0]).id == ids[0]
        with pytest.raises(aliquot.RunNotFoundError, match="no run matches"):
            kernel.get_run("zzz")
        with pytest.raises(aliquot.RunNotFoundError, match="fewer runs"):
            kernel.get_run("-9")
        prefix = ids[0][:9]  # the date part is shared by all three
        with pytest.raises(aliquot.RunNotFoundError, match="matches 3 runs"):
            kernel.get_run(prefix)
        assert kernel.runs(limit=1)[0]["id"] == ids[-1]


def test_each_run_stores_a_plugin_manifest() -> None:
    with make_kernel() as kernel:
        run = kernel.run([value])
        stored = kernel.get_run(run.id)
    names = {p["name"]: p for p in stored.plugins}
    assert {"function", "store_memory", "serializer_json", "executor_inline"} <= set(names)
    function = names["function"]
    assert function["distribution"] == "aliquot"
    assert function["version"] == aliquot.__version__
    assert function["hooks"] == ["aliquot_register_task_types"]
    assert function["builtin"] is True


def test_run_records_inputs_executor_host_and_timings() -> None:
    with make_kernel() as kernel:
        run = kernel.run([value], inputs={"x": 3}, executor="threads:2")
        stored = kernel.get_run(run.id)
    doc = stored.to_json()
    assert doc["inputs"] == {"x": 3}
    assert doc["executor"] == "threads:2"
    assert doc["host"]["pid"] == os.getpid()
    assert doc["duration"] is not None and doc["duration"] >= 0
    node = doc["nodes"][0]
    assert node["started"] and node["finished"] and node["duration"] >= 0


def test_a_run_whose_process_died_is_marked_crashed(store_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "victim.py"
    marker = tmp_path / "started"
    script.write_text(
        textwrap.dedent(
            f"""
            import time, aliquot

            @aliquot.task(outputs=["done"])
            def sleepy() -> int:
                open({str(marker)!r}, "w").close()
                time.sleep(60)
                return 1

            if __name__ == "__main__":
                with aliquot.Kernel.open({str(store_path)!r}) as kernel:
                    kernel.run([sleepy])
            """
        )
    )
    env = {**os.environ, "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, "the victim exited early"
            assert time.monotonic() < deadline, "the victim never started its task"
            time.sleep(0.05)
        time.sleep(1.3)  # let the group commit make the running run durable
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with aliquot.Kernel.open(store_path) as kernel:
        run = kernel.get_run("latest")
        assert run.status == "crashed"
        assert run.nodes["sleepy"].status == "cancelled"
        assert "died" in run.nodes["sleepy"].reason
        assert kernel.store.verify()["ok"]
        again = kernel.run([value])
        assert again.status == "succeeded"


def test_open_kernel_from_async_code(store_path: Path) -> None:
    async def main() -> float:
        async with aliquot.open_kernel(store_path) as kernel:
            run = await kernel.arun([value], inputs={"x": 5})
            return run["value"]

    assert trio.run(main) == 50
    with aliquot.Kernel.open(store_path) as kernel:
        assert kernel.get_run("latest")["value"] == 50


def test_a_closed_kernel_refuses_to_run() -> None:
    kernel = make_kernel()
    kernel.close()
    kernel.close()  # idempotent
    with pytest.raises(aliquot.AliquotError, match="closed"):
        kernel.run([value])


def test_two_kernels_on_one_store_in_one_process(store_path: Path) -> None:
    with aliquot.Kernel.open(store_path) as a, aliquot.Kernel.open(store_path) as b:
        run = a.run([value])
        assert b.get_run(run.id)["value"] == 10


def test_reopening_a_store_in_a_notebook_style_loop_works(store_path: Path) -> None:
    """Kernel.open twice without closing (a re-run notebook cell) must not fail."""
    first = aliquot.Kernel.open(store_path)
    second = aliquot.Kernel.open(store_path)
    assert second.run([value]).status == "succeeded"
    first.close()
    second.close()


def test_facade_is_lazy_and_curated() -> None:
    heavy = ("trio", "aliquot_builtins", "pluggy", "lmdb")
    code = f"import sys, aliquot; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "Kernel" in aliquot.__all__ and "task" in aliquot.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aliquot.nope  # noqa: B018
    assert aliquot.task is aliquot.__dict__["task"]  # cached after first access
    for name in aliquot.__all__:
        assert getattr(aliquot, name) is not None


def test_errors_are_shown_under_the_public_name() -> None:
    assert aliquot.GraphError.__module__ == "aliquot"
    error = aliquot.ErrorInfo.from_exception(aliquot.GraphError("x"))
    assert error.type == "aliquot.GraphError"


def test_kernel_open_in_a_worker_bootstrap_is_refused() -> None:
    sys._aliquot_worker_bootstrap = True  # type: ignore[attr-defined]
    try:
        with pytest.raises(aliquot.AliquotError, match='if __name__ == \\"__main__\\"'):
            aliquot.Kernel.open("memory://")
    finally:
        sys._aliquot_worker_bootstrap = False  # type: ignore[attr-defined]


def _chain(n: int) -> list:
    namespace: dict = {}
    exec("\n".join(f"def c{i}(v{i}):\n    return v{i}\n" for i in range(n)), namespace)
    tasks = [aliquot.task(outputs=[f"v{i + 1}"])(namespace[f"c{i}"]) for i in range(n)]

    @aliquot.task(outputs=["frozen"])
    def observe(**_: object) -> int:
        import gc

        return gc.get_freeze_count()

    tasks.append(observe)
    return tasks


def test_large_runs_hide_their_long_lived_objects_from_the_collector() -> None:
    """A run of thousands of nodes runs with its graph frozen, and unfreezes it after."""
    import gc

    from aliquot._kernel import FREEZE_THRESHOLD

    tasks = _chain(FREEZE_THRESHOLD)
    with make_kernel() as kernel:
        run = kernel.run(tasks, inputs={"v0": 1}, targets=["frozen", f"v{FREEZE_THRESHOLD}"])
    assert run["frozen"] > 0
    assert gc.get_freeze_count() == 0
    with make_kernel() as kernel:
        small = kernel.run(_chain(3), inputs={"v0": 1}, targets=["frozen"])
    assert small["frozen"] == 0  # small graphs are left alone


def test_a_heap_someone_else_froze_is_left_alone() -> None:
    import gc

    from aliquot._kernel import FREEZE_THRESHOLD

    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with make_kernel() as kernel:
            kernel.run(_chain(FREEZE_THRESHOLD), inputs={"v0": 1}, targets=["frozen"])
        assert gc.get_freeze_count() > before * 0.9  # not unfrozen (a few were freed)
    finally:
        gc.unfreeze()


def test_the_collector_state_is_restored_after_planning() -> None:
    import gc

    with make_kernel() as kernel:
        assert gc.isenabled()
        kernel.run([value])
        assert gc.isenabled()
        gc.disable()
        try:
            kernel.run([value])
            assert not gc.isenabled()  # a host that disabled it keeps it disabled
        finally:
            gc.enable()


class _Participant:
    """A middleware that notes plan options and passes notes to execution."""

    name = "participant"
    order = 0
    handles: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.seen_options: list[dict] = []
        self.seen_notes: list[dict] = []

    def plan(self, plan: aliquot.Plan, kernel: aliquot.Kernel) -> None:
        self.seen_options.append(dict(plan.options))
        for nid in plan.order:
            plan.notes[nid] = {"flavour": plan.options.get("flavour")}

    async def __call__(self, ctx: aliquot.NodeContext, call_next):  # type: ignore[no-untyped-def]
        self.seen_notes.append(dict(ctx.notes))
        return await call_next(ctx)


def _participant_plugin(mw: _Participant) -> object:
    class Plugin:
        __name__ = "participant-plugin"

        @aliquot.hookimpl
        def aliquot_register_middleware(self, register):  # type: ignore[no-untyped-def]
            register(mw)

    return Plugin()


def test_run_options_reach_plan_participants_and_notes_reach_middleware() -> None:
    mw = _Participant()
    with make_kernel([_participant_plugin(mw)], block=["cache"]) as kernel:
        kernel.run([value], options={"flavour": "mint"})
        kernel.plan([value], options={"flavour": "lime"})
    assert mw.seen_options == [{"flavour": "mint"}, {"flavour": "lime"}]
    assert mw.seen_notes == [{"flavour": "mint"}]


def test_run_views_are_reached_as_attributes_of_runs(store_path: Path) -> None:
    class Views:
        __name__ = "views-plugin"

        @aliquot.hookimpl
        def aliquot_register_run_views(self, register):  # type: ignore[no-untyped-def]
            register("summary", lambda run: f"{run.id}:{run.status}")

    with aliquot.Kernel.open(store_path, plugins=[Views()]) as kernel:
        run = kernel.run([value])
        assert run.summary == f"{run.id}:succeeded"
        assert kernel.get_run(run.id).summary == f"{run.id}:succeeded"
        with pytest.raises(AttributeError, match="views plugins provide: summary"):
            run.nothing  # noqa: B018


def test_kernel_methods_are_bound_methods_of_the_kernel() -> None:
    class Verbs:
        __name__ = "verbs-plugin"

        @aliquot.hookimpl
        def aliquot_register_kernel_methods(self, register):  # type: ignore[no-untyped-def]
            def greet(kernel: aliquot.Kernel, name: str, *, loud: bool = False) -> str:
                """Say hello from the kernel."""
                text = f"hello {name} from {kernel.location}"
                return text.upper() if loud else text

            register("greet", greet)

    with make_kernel([Verbs()]) as kernel:
        assert kernel.greet("ada") == "hello ada from memory://"
        assert kernel.greet("ada", loud=True) == "HELLO ADA FROM MEMORY://"
        assert kernel.greet.__name__ == "greet"
        assert kernel.greet.__doc__ == "Say hello from the kernel."
        with pytest.raises(AttributeError, match=r"methods plugins provide: .*greet"):
            kernel.wave  # noqa: B018


def test_a_kernel_method_may_not_take_a_name_the_kernel_defines() -> None:
    class Shadow:
        __name__ = "shadow-plugin"

        @aliquot.hookimpl
        def aliquot_register_kernel_methods(self, register):  # type: ignore[no-untyped-def]
            register("run", lambda kernel: None)

    with pytest.raises(
        aliquot.RegistrationError, match="'shadow-plugin' registered kernel method 'run'"
    ):
        make_kernel([Shadow()])


def test_job_sources_are_listed_together_newest_first() -> None:
    class Sources:
        __name__ = "sources-plugin"

        @aliquot.hookimpl
        def aliquot_register_job_sources(self, register):  # type: ignore[no-untyped-def]
            def old(kernel: aliquot.Kernel, limit: int | None) -> list[dict[str, str]]:
                return [{"id": "a2", "created": "2026-01-03T00:00:00Z"},
                        {"id": "a1", "created": "2026-01-01T00:00:00Z"}]  # fmt: skip

            def new(kernel: aliquot.Kernel, limit: int | None) -> list[dict[str, str]]:
                return [{"id": "b1", "created": "2026-01-02T00:00:00Z"}]

            register("old", old)
            register("new", new)

    with make_kernel([Sources()], block=["operators", "triggers"]) as kernel:
        assert [j["id"] for j in kernel.jobs()] == ["a2", "b1", "a1"]
        assert [j["id"] for j in kernel.jobs(limit=2)] == ["a2", "b1"]


def test_a_readonly_kernel_writes_nothing_and_refuses_to_run(store_path: Path) -> None:
    import hashlib

    with pytest.raises(aliquot.StoreError, match="no store at"):
        aliquot.Kernel.open(store_path, readonly=True)
    assert not store_path.exists()
    with aliquot.Kernel.open(store_path) as kernel:
        run_id = kernel.run([value]).id
    before = hashlib.sha256((store_path / "index" / "data.mdb").read_bytes()).hexdigest()
    with aliquot.Kernel.open(store_path, readonly=True) as kernel:
        assert kernel.get_run(run_id)["value"] == 10
        counts = kernel.plan([value]).counts()
        assert counts["run"] + counts["load"] == 1
        with pytest.raises(aliquot.AliquotError, match="read-only"):
            kernel.run([value])
        with pytest.raises(aliquot.StoreError, match="read-only"):
            kernel.store.put("x", b"k", b"v")
    after = hashlib.sha256((store_path / "index" / "data.mdb").read_bytes()).hexdigest()
    assert before == after
