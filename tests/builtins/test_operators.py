"""The ``operators`` plugin: the ``Operator`` tree, ``@operator``, ``map`` and ``star_map``."""

from __future__ import annotations

import inspect
import os
import pickle
import threading
import time
from typing import Any

import pytest
import trio

import aliquot
from aliquot import (
    AliquotError,
    MapError,
    Operator,
    TaskDefinitionError,
    UnknownNameError,
    operator,
)
from aliquot.testing import make_kernel
from aliquot_builtins.executor_inline import InlineExecutor

# ---------------------------------------------------------------------------
# Module-level operators: the ``processes`` executor imports them by file.
# ---------------------------------------------------------------------------


class Double(Operator):
    def forward(self, x: int) -> int:
        return 2 * x


class Pipeline(Operator):
    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.double = Double()  # a child, registered by assignment

    def forward(self, x: int) -> int:
        return self.double(x) + self.k


@operator()
def square(x: float = 4) -> float:
    """Square a number."""
    return x * x


@operator()
class Counter:
    """A stateful counter."""

    def __init__(self, x: int = 1):
        self.x = x

    def inc(self) -> None:
        self.x += 1


@operator
class Scaler:
    """A callable wrapped class: calling the operator calls the instance."""

    def __init__(self, factor: int = 2):
        self.factor = factor

    def __call__(self, x: int) -> int:
        return self.factor * x


@operator
def where(x: int) -> tuple[int, int, int]:
    """The input, the process and the thread a call ran in."""
    return x, os.getpid(), threading.get_ident()


@operator
def adder(a: int, b: int) -> int:
    return a + b


@operator
def divide(a: int, b: int) -> float:
    return a / b


@operator
def fussy(x: int) -> int:
    """Fails on 1, 3 and 12."""
    if x in (1, 3, 12):
        raise ValueError(f"bad input {x}")
    return x


class Chain(Operator):
    """``depth`` nested operators, each adding one."""

    def __init__(self, depth: int):
        super().__init__()
        if depth:
            self.child = Chain(depth - 1)

    def forward(self, x: int) -> int:
        return self.child(x) + 1 if "child" in self._operators else x


@aliquot.task(outputs=["fanned"])
def fan_out(n: int) -> list[int]:
    """A task that maps an operator while the kernel's trio loop is running."""
    return Pipeline(10).map(range(n), workers=2)


# ---------------------------------------------------------------------------
# The issue's example and the seed's examples
# ---------------------------------------------------------------------------


def test_issue_example() -> None:
    p = Pipeline(1)
    assert p(2) == 5
    assert [n for n, _ in p.named_operators()] == ["", "double"]
    assert p.map([1, 2, 3], workers=2) == [3, 5, 7]
    assert p.star_map([(1,), (2,)]) == [3, 5]
    assert square() == 16 and square(3) == 9
    c = Counter(x=3)
    c.inc()
    assert c.x == 4


class MyOtherOperator(Operator):
    def __init__(self, b: str):
        super().__init__()
        self.b = b

    def forward(self, y: int) -> int:
        return y + len(self.b)


class MyOperator(Operator):
    def __init__(self, a: int, b: str):
        super().__init__()
        self.a: int = a
        self.b: Operator = MyOtherOperator(b)  # nested calling

    def forward(self, x: int) -> int:
        y = self.a + x
        y = self.b(y) + x  # nested calling
        return y


def test_seed_nested_operator_example() -> None:
    job = MyOperator(1, "hello")  # define once
    assert job(2) == (1 + 2 + 5) + 2  # use like python
    assert [n for n, _ in job.named_operators()] == ["", "b"]
    assert job.map([0, 2]) == [6, 10]


@operator()
def foo(i: float = 4) -> float:
    return i * i


@operator()
class Bar:
    def __init__(self, x: int = 1):
        self.x = x

    def inc(self) -> None:
        self.x += 1

    def getvalue(self) -> int:
        return self.x

    def __getattr__(self, k: str) -> Any:
        # the seed's echo: any unknown attribute of the wrapped object is ``str``
        return str


def test_seed_decorated_function_and_class_examples() -> None:
    assert foo() == 16 and foo(10) == 100
    assert foo.deployment == "job"
    bar = Bar()
    bar.inc()
    assert bar.x == 2 and bar.getvalue() == 2
    assert bar.jj_guverner is str  # reaches the wrapped object's __getattr__
    assert Bar.deployment == "serving" and isinstance(bar, Operator)


# ---------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------


class Holder(Operator):
    """An operator whose children are set by the test."""

    def __init__(self, **children: Any) -> None:
        super().__init__()
        for name, value in children.items():
            setattr(self, name, value)


def names(op: Operator, **kwargs: Any) -> list[str]:
    return [name for name, _ in op.named_operators(**kwargs)]


def test_children_in_containers_get_indexed_names() -> None:
    first, second, key, value = Double(), Double(), Double(), Double()
    op = Holder(layers=[first, second], heads={"key": key}, pair=(value,), plain=[1, 2])
    assert list(op.named_children()) == [
        ("layers.0", first),
        ("layers.1", second),
        ("heads.key", key),
        ("pair.0", value),
    ]
    assert list(op.children()) == [first, second, key, value]
    assert names(op) == ["", "layers.0", "layers.1", "heads.key", "pair.0"]


def test_a_list_mixing_operators_and_values_is_not_a_child() -> None:
    assert names(Holder(mixed=[Double(), 1], empty=[], nothing={})) == [""]


def test_reassigning_a_non_operator_removes_the_child() -> None:
    op = Holder(a=Double(), b=Double())
    op.a = 3
    assert names(op) == ["", "b"] and op.a == 3
    op.b = [Double()]
    op.b = []
    assert names(op) == [""]


def test_reassigning_an_operator_replaces_the_child() -> None:
    op = Holder(a=Double())
    new = Pipeline(0)
    op.a = new
    assert list(op.named_operators()) == [("", op), ("a", new), ("a.double", new.double)]


def test_del_removes_the_child() -> None:
    op = Holder(a=Double(), b=Double())
    del op.a
    assert names(op) == ["", "b"]
    assert not hasattr(op, "a")


@pytest.mark.parametrize("value", [Double(), [Double()], {"k": Double()}])
def test_assigning_an_operator_before_super_init_is_a_clear_error(value: Any) -> None:
    class Early(Operator):
        def __init__(self) -> None:
            self.child = value
            super().__init__()

    with pytest.raises(TaskDefinitionError, match=r"'child'.*super\(\)\.__init__\(\).*Early"):
        Early()


def test_plain_attributes_before_super_init_are_allowed() -> None:
    class Configured(Operator):
        def __init__(self) -> None:
            self.k = 2
            super().__init__()
            self.double = Double()

        def forward(self, x: int) -> int:
            return self.double(x) * self.k

    op = Configured()
    assert op(3) == 12 and names(op) == ["", "double"]


def test_named_operators_is_depth_first_with_dotted_names() -> None:
    op = Holder(a=Holder(b=Holder(c=Double()), d=Double()), e=Double())
    assert names(op) == ["", "a", "a.b", "a.b.c", "a.d", "e"]
    assert names(op, prefix="root") == [
        "root",
        "root.a",
        "root.a.b",
        "root.a.b.c",
        "root.a.d",
        "root.e",
    ]
    assert list(op.operators()) == [o for _, o in op.named_operators()]


def test_a_shared_child_is_listed_once_unless_duplicates_are_asked_for() -> None:
    shared = Pipeline(0)
    op = Holder(a=shared, b=shared, c=[shared])
    assert names(op) == ["", "a", "a.double"]
    assert names(op, remove_duplicate=False) == [
        "",
        "a",
        "a.double",
        "b",
        "b.double",
        "c.0",
        "c.0.double",
    ]


def test_propagate_sets_attributes_on_the_whole_tree() -> None:
    counter = Counter(5)
    op = Holder(a=Pipeline(1), b=[counter])
    op.propagate(debug=True, level=3)
    for _name, each in op.named_operators():
        assert each.debug is True and each.level == 3
    assert counter._wrapped.debug is True  # written through to the wrapped instance


class Loader(Operator):
    def __init__(self, label: str, log: list[str], **children: Operator) -> None:
        super().__init__()
        self.label = label
        self.log = log
        for name, child in children.items():
            setattr(self, name, child)

    def __remote_init__(self) -> None:
        self.log.append(self.label)


def test_remote_init_calls_every_operator_parents_first() -> None:
    log: list[str] = []
    shared = Loader("shared", log)
    root = Loader(
        "root",
        log,
        a=Loader("a", log, x=Loader("a.x", log), s=shared),
        b=Loader("b", log, s=shared),
        plain=Double(),  # the default __remote_init__ does nothing
    )
    root.remote_init()
    assert log == ["root", "a", "a.x", "shared", "b"]


def test_repr_is_a_nested_tree() -> None:
    op = Holder(pipe=Pipeline(1), heads={"key": Double()})
    assert repr(op) == (
        "Holder(\n  (pipe): Pipeline(\n    (double): Double()\n  )\n  (heads.key): Double()\n)"
    )
    assert repr(Double()) == "Double()"


def test_extra_repr_adds_a_line() -> None:
    class Described(Pipeline):
        def extra_repr(self) -> str:
            return f"k={self.k}"

    assert repr(Described(7)) == "Described(\n  k=7\n  (double): Double()\n)"


def test_a_tree_twenty_deep_calls_lists_and_prints() -> None:
    chain = Chain(20)
    assert chain(0) == 20
    listed = names(chain)
    assert listed == [".".join(["child"] * depth) for depth in range(21)]
    assert listed[-1] == "child." * 19 + "child"
    assert repr(chain).count("(child): Chain(") == 20 and repr(chain).count("Chain()") == 1
    assert chain.map([0, 1], workers=2) == [20, 21]


def test_forward_must_be_defined() -> None:
    class Empty(Operator):
        pass

    with pytest.raises(NotImplementedError, match=r"Empty\.forward"):
        Empty()(1)


# ---------------------------------------------------------------------------
# @operator
# ---------------------------------------------------------------------------


def test_decorated_function_is_an_operator_that_keeps_its_identity() -> None:
    assert isinstance(square, Operator)
    assert square.deployment == "job"
    assert square.__name__ == "square" and square.__doc__ == "Square a number."
    assert square.__wrapped__(3) == 9
    assert list(inspect.signature(square).parameters) == ["x"]
    assert square(x=5) == 25
    assert list(square.named_operators()) == [("", square)]
    assert square.map([1, 2, 3], workers=2) == [1, 4, 9]
    assert square.star_map([(2,), (3,)]) == [4, 9]


def test_bare_and_called_decorator_are_the_same() -> None:
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    bare = operator(double)
    called = operator()(double)
    for op in (bare, called):
        assert isinstance(op, Operator) and op(4) == 8 and op.__doc__ == "Twice x."
        assert op.deployment == "job" and op.__name__ == "double"


def test_decorating_an_operator_returns_it_unchanged() -> None:
    instance = Double()
    assert operator(Double) is Double
    assert operator(instance) is instance


def test_decorating_something_else_is_an_error() -> None:
    with pytest.raises(TaskDefinitionError, match="function or a class, got 42"):
        operator(42)


def test_decorated_class_makes_operators_wrapping_its_instances() -> None:
    assert Counter.__name__ == "Counter" and Counter.__doc__ == "A stateful counter."
    assert Counter.deployment == "serving"
    c = Counter(x=3)
    assert isinstance(c, Operator) and c.deployment == "serving"
    c.inc()
    assert c.x == 4 and c._wrapped.x == 4
    c.x = 10  # a write reaches the wrapped instance
    assert c._wrapped.x == 10
    c.new = "value"
    assert c._wrapped.new == "value"
    with pytest.raises(AttributeError):
        _ = c.missing
    assert "Counter" in repr(c)


def test_calling_a_non_callable_wrapped_instance_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match=r"operator 'Counter': Counter instances are not callable"):
        Counter()()


def test_calling_a_callable_wrapped_instance_calls_it() -> None:
    assert Scaler(3)(4) == 12
    assert Scaler.deployment == "serving"


def test_an_operator_child_of_a_decorated_class_is_part_of_the_tree() -> None:
    c = Counter()
    c.helper = Double()
    assert names(c) == ["", "helper"] and "helper" not in vars(c._wrapped)
    root = Holder(counter=c)
    root.propagate(flag=1)
    assert c._wrapped.flag == 1 and c.helper.flag == 1


def test_reassigning_a_non_operator_removes_a_child_of_a_decorated_class() -> None:
    c = Counter()
    c.helper = Double()
    c.helper = 3
    assert names(c) == [""]
    assert c.helper == 3


def test_decorated_names_pickle_by_reference() -> None:
    assert pickle.loads(pickle.dumps(square)) is square
    assert pickle.loads(pickle.dumps(Counter)) is Counter
    c = Counter(x=7)
    c.inc()
    back = pickle.loads(pickle.dumps(c))
    assert type(back) is Counter and back is not c
    assert back.x == 8
    back.inc()
    assert back.x == 9 and c.x == 8


def test_an_operator_subclass_instance_pickles_with_its_tree() -> None:
    back = pickle.loads(pickle.dumps(Pipeline(4)))
    assert back(1) == 6 and names(back) == ["", "double"]


# ---------------------------------------------------------------------------
# map and star_map
# ---------------------------------------------------------------------------


class InFlight(Operator):
    """Counts the calls running at once (thread-safe) and the peak."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    def forward(self, x: int) -> int:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        try:
            if self.delay:
                time.sleep(self.delay)
            return x * 3
        finally:
            with self.lock:
                self.running -= 1


def test_a_thousand_inputs_run_at_most_workers_at_once_in_order() -> None:
    op = InFlight(delay=0.0005)
    assert op.map(range(1000), workers=4) == [3 * i for i in range(1000)]
    assert op.calls == 1000
    assert 2 <= op.peak <= 4


@pytest.mark.parametrize(
    ("executor", "workers", "limit"),
    [("threads:3", None, 3), ("threads:3", 3, 3), ("threads", 1, 1)],
)
def test_the_executor_count_bounds_the_calls(
    executor: str, workers: int | None, limit: int
) -> None:
    op = InFlight(delay=0.002)
    assert op.map(range(60), workers=workers, executor=executor) == [3 * i for i in range(60)]
    assert 1 <= op.peak <= limit


def test_generators_are_accepted_as_inputs() -> None:
    assert Pipeline(1).map(x for x in range(5)) == [1, 3, 5, 7, 9]
    pairs = ((a, b) for a, b in zip(range(3), range(10, 13), strict=True))
    assert adder.star_map(pairs, workers=2) == [10, 12, 14]
    assert adder.star_map([[1, 2], (3, 4)]) == [3, 7]  # any iterable of arguments


def test_map_of_nothing_is_an_empty_list() -> None:
    assert Double().map([]) == []
    assert Double().star_map(iter(())) == []


def test_each_call_sees_its_own_input() -> None:
    """No late binding: slow calls, so every call starts after the loop has moved on."""
    seen: list[int] = []
    lock = threading.Lock()

    class Record(Operator):
        def forward(self, x: int) -> int:
            time.sleep(0.01)
            with lock:
                seen.append(x)
            return x + 100

    inputs = list(range(16))
    assert Record().map(inputs, workers=4) == [x + 100 for x in inputs]
    assert sorted(seen) == inputs


def test_each_star_map_call_sees_its_own_arguments() -> None:
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    class Record(Operator):
        def forward(self, n: int, s: str) -> str:
            time.sleep(0.01)
            with lock:
                seen.append((n, s))
            return s * n

    inputs = [(n, chr(ord("a") + n)) for n in range(8)]
    assert Record().star_map(inputs, workers=4) == [s * n for n, s in inputs]
    assert sorted(seen) == inputs


def test_executors_run_calls_where_they_say() -> None:
    main = (os.getpid(), threading.get_ident())
    inline = where.map(range(3), executor="inline")
    assert [x for x, _, _ in inline] == [0, 1, 2]
    assert {(pid, thread) for _, pid, thread in inline} == {main}
    threads = where.map(range(3), executor="threads:2")
    assert {pid for _, pid, _ in threads} == {main[0]}
    assert main[1] not in {thread for _, _, thread in threads}


@pytest.mark.parametrize(
    ("op", "expected"),
    [(Pipeline(1), [3, 5, 7]), (square, [1, 4, 9]), (Scaler(5), [5, 10, 15])],
    ids=["subclass", "function", "class"],
)
def test_map_on_worker_processes(op: Operator, expected: list[int]) -> None:
    assert op.map([1, 2, 3], executor="processes:2") == expected


def test_processes_run_in_at_most_workers_other_processes() -> None:
    results = where.map(range(8), workers=2, executor="processes")
    assert [x for x, _, _ in results] == list(range(8))
    pids = {pid for _, pid, _ in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_star_map_on_worker_processes() -> None:
    assert adder.star_map([(1, 2), (3, 4)], executor="processes:1") == [3, 7]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"executor": "thraeds"}, UnknownNameError, r"unknown executor 'thraeds'.*threads"),
        ({"workers": 0}, AliquotError, r"workers must be a whole number >= 1, got 0"),
        ({"workers": -1}, AliquotError, r"workers must be a whole number >= 1, got -1"),
        ({"executor": "threads:0"}, AliquotError, r"got 0"),
        ({"executor": "threads:x"}, AliquotError, r"'threads:x'.*N must be a number"),
        ({"executor": ":3"}, AliquotError, r"invalid executor ':3'"),
        ({"executor": "threads:3", "workers": 2}, AliquotError, r"says 3 workers but workers=2"),
    ],
)
def test_bad_executor_or_workers_is_a_clear_error(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    calls = InFlight()
    with pytest.raises(error, match=message):
        calls.map([1, 2], **kwargs)
    assert calls.calls == 0


def test_bad_workers_are_refused_even_with_no_inputs() -> None:
    with pytest.raises(AliquotError, match="workers must be"):
        Double().map([], workers=0)


def test_a_bad_executor_name_is_refused_even_with_no_inputs() -> None:
    with pytest.raises(UnknownNameError):
        Double().map([], executor="thraeds")


class FailOn(Operator):
    def __init__(self, bad: set[int], delay: float = 0.0) -> None:
        super().__init__()
        self.bad = bad
        self.delay = delay
        self.lock = threading.Lock()
        self.calls = 0

    def forward(self, x: int) -> int:
        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if x in self.bad:
            raise ValueError(f"bad input {x}")
        return x


@pytest.mark.parametrize("executor", ["threads", "inline", "processes:1"])
def test_a_failure_raises_map_error_naming_the_input(executor: str) -> None:
    inputs = [10, 11, 12, 13]
    with pytest.raises(MapError) as info:
        fussy.map(inputs, executor=executor)
    err = info.value
    assert err.index == 2 and err.input == (12,)
    assert isinstance(err.error, ValueError) and str(err.error) == "bad input 12"
    assert err.__cause__ is err.error
    assert isinstance(err, AliquotError) and isinstance(err, aliquot.MapError)
    assert "input 2 (12) failed: ValueError: bad input 12" in str(err)


def test_star_map_failure_names_the_argument_tuple() -> None:
    with pytest.raises(MapError, match=r"input 1 \(\(2, 0\)\) failed: ZeroDivisionError"):
        divide.star_map([(4, 2), (2, 0), (9, 3)])
    with pytest.raises(MapError) as info:
        divide.star_map([(4, 2), (2, 0)])
    assert info.value.index == 1 and info.value.input == (2, 0)


def test_the_first_failure_cancels_the_rest_on_threads() -> None:
    op = FailOn(set(range(100)), delay=0.01)  # every call fails, slowly
    with pytest.raises(MapError):
        op.map(range(100), workers=2)
    assert op.calls <= 8  # the calls already running, not the other ~90


def test_the_first_failure_cancels_the_rest_inline() -> None:
    op = FailOn(set(range(20)))  # every call fails
    with pytest.raises(MapError):
        op.map(range(20), executor="inline")
    assert op.calls == 1


@pytest.mark.parametrize("executor", ["threads", "inline", "processes:1"])
def test_return_exceptions_puts_failures_in_place(executor: str) -> None:
    results = fussy.map(range(5), executor=executor, return_exceptions=True)
    assert [r for i, r in enumerate(results) if i not in (1, 3)] == [0, 2, 4]
    assert [type(results[i]) for i in (1, 3)] == [ValueError, ValueError]
    assert str(results[3]) == "bad input 3"


def test_mapping_a_non_callable_wrapped_class_fails_each_input() -> None:
    results = Counter().map([1, 2], return_exceptions=True)
    assert all(isinstance(r, TypeError) for r in results)


def test_kernel_argument_uses_that_kernels_executors() -> None:
    submitted: list[tuple[Any, ...]] = []

    class Recording(InlineExecutor):
        name = "recording"

        async def submit(self, call: aliquot.Call) -> Any:
            submitted.append(tuple(call.args))
            return await super().submit(call)

    class Plugin:
        @aliquot.hookimpl
        def aliquot_register_executors(self, register: Any) -> None:
            register(Recording)

    with make_kernel([Plugin()]) as kernel:
        assert Double().map([1, 2, 3], executor="recording", kernel=kernel) == [2, 4, 6]
        assert Double().star_map([(5,)], executor="recording", kernel=kernel) == [10]
    assert sorted(submitted) == [(1,), (2,), (3,), (5,)]
    with pytest.raises(UnknownNameError, match="recording"):  # not the default kernel's
        Double().map([1], executor="recording")


def test_kernel_open_memory_store_works_as_kernel_argument() -> None:
    with aliquot.Kernel.open("memory://") as kernel:
        assert Pipeline(0).map([1, 2], kernel=kernel, executor="threads:2") == [2, 4]


def test_map_inside_a_running_trio_loop() -> None:
    async def main() -> list[int]:
        return Pipeline(1).map([1, 2, 3], workers=2)

    assert trio.run(main) == [3, 5, 7]

    async def failing() -> None:
        fussy.map([12])

    with pytest.raises(MapError) as info:
        trio.run(failing)
    assert info.value.index == 0


def test_map_inside_an_inline_map_and_inside_a_task() -> None:
    class Outer(Operator):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Double()

        def forward(self, n: int) -> list[int]:
            return self.inner.map(range(n), workers=2)

    assert Outer().map([1, 3], executor="inline") == [[0], [0, 2, 4]]
    with make_kernel() as kernel:
        assert kernel.run([fan_out], inputs={"n": 3})["fanned"] == [10, 12, 14]


def test_inputs_are_read_once() -> None:
    """A one-shot iterator is consumed once and every item is called."""
    op = InFlight()
    assert op.map(iter(range(3)), workers=2) == [0, 3, 6]
    assert op.calls == 3
