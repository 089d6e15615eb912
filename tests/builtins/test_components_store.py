"""Components in the store: ``kernel.apply`` / ``load`` / ``show`` / ``remove``.

Most tests run against both stores (``memory://`` and LMDB).
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import typing as t
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import aliquot
from aliquot import Component, PluginNotActiveError, UntrustedPayloadError, trigger
from aliquot_builtins.components import (
    Applied,
    AppliedComponent,
    ComponentError,
    ComponentInUseError,
    ComponentNotFoundError,
)

SPACES = ("components", "component_uuids", "component_blobs", "component_users", "trigger_jobs")

#: What the lifecycle methods of the classes below did, in order.
EVENTS: list[tuple[str, str, Any]] = []


def send(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def send_other(**kwargs: Any) -> None:
    return None


class Widget(Component):
    a: int
    note: str = ""
    extra: t.Any = None
    fn: t.Callable | None = None
    arr: t.Any = None
    fail_cleanup: bool = False
    non_breaking = ("note", "extra")

    def postinit(self) -> None:
        EVENTS.append(("postinit", self.identifier, self.a))

    def on_create(self) -> None:
        EVENTS.append(("on_create", self.identifier, self.version))

    def cleanup(self) -> None:
        EVENTS.append(("cleanup", self.identifier, self.version))
        if self.fail_cleanup:
            raise RuntimeError(f"cannot clean {self.identifier}")


class Part(Component):
    v: int = 0
    arr: t.Any = None

    def on_create(self) -> None:
        EVENTS.append(("on_create", self.identifier, self.version))

    def cleanup(self) -> None:
        EVENTS.append(("cleanup", self.identifier, self.version))


class Assembly(Component):
    part: Part | None = None
    spare: Part | None = None
    parts: list = []

    def on_create(self) -> None:
        EVENTS.append(("on_create", self.identifier, self.version))


class Fragile(Component):
    x: int = 0

    def on_create(self) -> None:
        raise RuntimeError("boom")


class Triggered(Component):
    x: int = 0
    note: str = ""
    non_breaking = ("note",)

    @trigger("apply")
    def build(self) -> int:
        return self.x


@pytest.fixture(autouse=True)
def _clear_events() -> Iterator[None]:
    EVENTS.clear()
    yield
    EVENTS.clear()


@pytest.fixture(params=["memory", "lmdb"])
def kernel(request: pytest.FixtureRequest, store_path: Path) -> Iterator[aliquot.Kernel]:
    location = "memory://" if request.param == "memory" else str(store_path)
    kernel = aliquot.Kernel.open(location)
    yield kernel
    kernel.close()


@pytest.fixture
def lmdb_kernel(store_path: Path) -> Iterator[aliquot.Kernel]:
    kernel = aliquot.Kernel.open(str(store_path))
    yield kernel
    kernel.close()


def _dump(kernel: aliquot.Kernel) -> dict[str, list[tuple[bytes, bytes]]]:
    return {space: list(kernel.store.scan(space)) for space in SPACES}


def _record(kernel: aliquot.Kernel, type_name: str, identifier: str, version: int) -> Any:
    key = type_name.encode() + b"\0" + identifier.encode() + b"\0" + version.to_bytes(4, "big")
    raw = kernel.store.get("components", key)
    return None if raw is None else orjson.loads(raw)


def _digest(component: Component, field: str) -> str:
    digest: str = component.encode().document["fields"][field]["$blob"]["digest"]
    return digest


def _check_indexes(kernel: aliquot.Kernel) -> None:
    """Every record has its uuid index and blob refs; no index points at nothing."""
    records = {key: orjson.loads(raw) for key, raw in kernel.store.scan("components")}
    uuids = dict(kernel.store.scan("component_uuids"))
    for key, record in records.items():
        assert uuids.get(record["document"]["uuid"].encode()) == key, key
        for digest in record["blobs"]:
            assert kernel.store.get("component_blobs", bytes.fromhex(digest) + key) == b""
            assert kernel.store.has_value(digest)
    for uuid, key in uuids.items():
        assert key in records, uuid
    for ref, _ in kernel.store.scan("component_blobs"):
        assert ref[32:] in records
        assert ref[:32].hex() in records[ref[32:]]["blobs"]


# ---------------------------------------------------------------------------
# apply: new, same, update, breaking
# ---------------------------------------------------------------------------


def test_apply_new(kernel: aliquot.Kernel) -> None:
    w = Widget("w", a=1)
    applied = kernel.apply(w)
    assert isinstance(applied, Applied)
    assert applied.components == (AppliedComponent("Widget", "w", 0, w.uuid, "new", ()),)
    assert (applied.action, applied.version, applied.jobs, applied.run) == ("new", 0, (), None)
    assert applied.ok
    assert applied.component.huuid == w.huuid
    assert w.version == 0
    assert kernel.show() == ["Widget"]
    assert kernel.show("Widget") == ["w"]
    assert kernel.show(Widget, "w") == [0]
    assert ("on_create", "w", 0) in EVENTS
    _check_indexes(kernel)


def test_applied_to_json_is_json(kernel: aliquot.Kernel) -> None:
    applied = kernel.apply(Triggered("t", x=3))
    doc = orjson.loads(orjson.dumps(applied.to_json()))
    assert doc["components"] == [
        {
            "type": "Triggered",
            "identifier": "t",
            "version": 0,
            "uuid": applied.component.uuid,
            "action": "new",
            "changed": [],
            "huuid": applied.component.huuid,
        }
    ]
    assert [j["method"] for j in doc["jobs"]] == ["build"]
    assert doc["jobs"][0]["status"] == "succeeded"
    assert doc["jobs"][0]["result"] == "3"
    assert doc["run"] == applied.run and applied.run is not None


def test_apply_same_is_idempotent_no_writes_no_jobs(kernel: aliquot.Kernel) -> None:
    first = kernel.apply(Triggered("t", x=1, note="n"))
    assert [j["status"] for j in first.jobs] == ["succeeded"]
    before = _dump(kernel)
    stats = kernel.store.stats()
    txn = kernel.store._env.info()["last_txnid"] if hasattr(kernel.store, "_env") else None
    again = kernel.apply(Triggered("t", x=1, note="n"))
    assert again.components == (
        AppliedComponent("Triggered", "t", 0, first.component.uuid, "same", ()),
    )
    assert (again.jobs, again.run) == ((), None)
    assert _dump(kernel) == before
    assert kernel.store.stats() == stats
    assert kernel.store.pending == 0
    if txn is not None:
        assert kernel.store._env.info()["last_txnid"] == txn  # not one write transaction
    assert len(kernel.jobs()) == 1


def test_apply_update_keeps_the_version_and_replaces_the_record(kernel: aliquot.Kernel) -> None:
    first = kernel.apply(Widget("w", a=1, note="old"))
    created = _record(kernel, "Widget", "w", 0)["created"]
    EVENTS.clear()
    updated = kernel.apply(Widget("w", a=1, note="new"))
    assert updated.components == (
        AppliedComponent("Widget", "w", 0, first.component.uuid, "update", ("note",)),
    )
    assert kernel.show("Widget", "w") == [0]
    record = _record(kernel, "Widget", "w", 0)
    assert record["document"]["fields"]["note"] == "new"
    assert record["created"] == created
    assert kernel.load(Widget, "w").note == "new"
    assert not [e for e in EVENTS if e[0] == "on_create"]  # not a new version
    _check_indexes(kernel)


def test_update_of_a_blob_field_moves_the_blob_reference(kernel: aliquot.Kernel) -> None:
    one, two = np.arange(10), np.arange(10) + 100
    kernel.apply(Widget("w", a=1, extra=one))
    old = _digest(Widget("w", a=1, extra=one), "extra")
    assert old in kernel.live_values()
    applied = kernel.apply(Widget("w", a=1, extra=two))
    assert (applied.action, applied.version, applied.component.changed) == ("update", 0, ("extra",))
    new = _digest(Widget("w", a=1, extra=two), "extra")
    live = kernel.live_values()
    assert new in live and old not in live
    assert _record(kernel, "Widget", "w", 0)["blobs"] == [new]
    assert np.array_equal(kernel.load(Widget, "w").extra, two)
    _check_indexes(kernel)


def test_apply_breaking_adds_a_version_and_keeps_the_old(kernel: aliquot.Kernel) -> None:
    v0 = kernel.apply(Widget("w", a=1, fn=send))
    EVENTS.clear()
    v1 = kernel.apply(Widget("w", a=2, fn=send))
    assert v1.components == (
        AppliedComponent("Widget", "w", 1, Widget("w", a=2, fn=send).uuid, "breaking", ("a",)),
    )
    assert v0.component.uuid != v1.component.uuid
    assert kernel.show("Widget", "w") == [0, 1]
    assert kernel.load(Widget, "w").a == 2
    assert kernel.load(Widget, "w", version=0).a == 1
    assert kernel.load(Widget, "w", version=1).a == 2
    assert kernel.load(Widget, uuid=v0.component.uuid).version == 0
    assert ("on_create", "w", 1) in EVENTS
    v2 = kernel.apply(Widget("w", a=2, fn=send_other))
    assert (v2.action, v2.version, v2.component.changed) == ("breaking", 2, ("fn",))
    _check_indexes(kernel)


def test_apply_sets_version_on_the_object(kernel: aliquot.Kernel) -> None:
    w = Widget("w", a=1)
    assert w.version is None
    kernel.apply(w)
    w2 = Widget("w", a=2)
    kernel.apply(w2)
    assert (w.version, w2.version) == (0, 1)
    assert repr(w2).endswith(" version=1")


def test_apply_refuses_non_components(kernel: aliquot.Kernel) -> None:
    with pytest.raises(ComponentError, match=r"kernel\.apply takes a Component, not dict"):
        kernel.apply({"a": 1})


def test_apply_without_the_triggers_plugin(store_path: Path) -> None:
    with aliquot.Kernel.open("memory://", block=["triggers"]) as kernel:
        with pytest.raises(PluginNotActiveError, match="'triggers' plugin"):
            kernel.apply(Triggered("t"))
        assert kernel.show() == []
        assert kernel.apply(Triggered("t"), jobs=False).action == "new"
        assert kernel.apply(Widget("w", a=1)).action == "new"  # no triggers: fine


def test_on_create_failure_says_it_was_saved(kernel: aliquot.Kernel) -> None:
    with pytest.raises(
        ComponentError,
        match=r"Fragile:f was saved \(version 0\), but its on_create failed: "
        r"RuntimeError: boom",
    ):
        kernel.apply(Fragile("f", x=1))
    assert kernel.show("Fragile", "f") == [0]
    assert kernel.load(Fragile, "f").x == 1


# ---------------------------------------------------------------------------
# load and show
# ---------------------------------------------------------------------------


def test_load_forms(kernel: aliquot.Kernel) -> None:
    v0 = kernel.apply(Widget("w", a=1, fn=send, arr=np.arange(3)))
    kernel.apply(Widget("w", a=2, fn=send, arr=np.arange(3)))
    EVENTS.clear()
    by_class = kernel.load(Widget, "w")
    by_name = kernel.load("Widget", "w")
    assert type(by_name) is Widget
    assert by_class == by_name == Widget("w", a=2, fn=send, arr=np.arange(3))
    assert by_class.version == 1
    old = kernel.load("Widget", "w", version=0)
    assert (old.a, old.version) == (1, 0)
    by_uuid = kernel.load("Widget", uuid=v0.component.uuid)
    assert by_uuid == old and by_uuid.version == 0
    assert by_class.fn is send
    assert ("postinit", "w", 2) in EVENTS  # postinit runs after load


def test_load_of_an_unknown_identifier_lists_what_exists(kernel: aliquot.Kernel) -> None:
    kernel.apply(Widget("w1", a=1))
    kernel.apply(Widget("w2", a=1))
    with pytest.raises(ComponentNotFoundError, match=r"w1.*w2"):
        kernel.load(Widget, "nope")


def test_load_errors(kernel: aliquot.Kernel) -> None:
    kernel.apply(Widget("w", a=1))
    kernel.apply(Widget("w", a=2))
    with pytest.raises(ComponentNotFoundError, match=r"no stored component Widget:nope in"):
        kernel.load(Widget, "nope")
    with pytest.raises(
        ComponentNotFoundError,
        match=r"no stored component Widget:w version 7 in .*\(stored versions: 0, 1\)",
    ):
        kernel.load(Widget, "w", version=7)
    with pytest.raises(ComponentNotFoundError, match="with uuid 00000000000000000000"):
        kernel.load(Widget, uuid="0" * 20)
    with pytest.raises(ComponentNotFoundError, match=r"no stored component Part:w"):
        kernel.load(Part, "w")
    with pytest.raises(ComponentNotFoundError, match="no stored component Part with uuid"):
        kernel.load(Part, uuid=Widget("w", a=2).uuid)
    with pytest.raises(ComponentError, match="version must be a non-negative int"):
        kernel.load(Widget, "w", version=-1)
    with pytest.raises(ComponentError, match="name the component"):
        kernel.load(Widget)
    with pytest.raises(ComponentError, match="takes a Component class or a type name"):
        kernel.load(42, "w")


def test_show_forms(kernel: aliquot.Kernel) -> None:
    assert kernel.show() == []
    kernel.apply(Widget("w2", a=1))
    kernel.apply(Widget("w1", a=1, arr=np.arange(4)))
    kernel.apply(Widget("w1", a=2, arr=np.arange(4)))
    kernel.apply(Part("p", v=1))
    assert kernel.show() == ["Part", "Widget"]
    assert kernel.show("Widget") == ["w1", "w2"]
    assert kernel.show(Widget) == ["w1", "w2"]
    assert kernel.show("Nothing") == []
    assert kernel.show("Widget", "w1") == [0, 1]
    info = kernel.show("Widget", "w1", 1)
    expected_uuid = Widget("w1", a=2, arr=np.arange(4)).uuid
    assert info["type"] == "Widget" and info["identifier"] == "w1" and info["version"] == 1
    assert info["uuid"] == expected_uuid
    assert info["huuid"] == f"Widget:w1:{expected_uuid}"
    assert info["class"] == f"{Widget.__module__}:Widget"
    assert info["fields"]["a"] == 2
    assert info["blobs"] == [_digest(Widget("w1", a=2, arr=np.arange(4)), "arr")]
    assert (info["children"], info["users"]) == ([], [])
    assert set(info) >= {"hash", "created", "updated"}
    with pytest.raises(ComponentNotFoundError, match=r"Widget:w3"):
        kernel.show("Widget", "w3")
    with pytest.raises(ComponentNotFoundError, match=r"version 9 .*stored versions: 0, 1"):
        kernel.show("Widget", "w1", 9)


def test_stored_record_has_no_builds(kernel: aliquot.Kernel) -> None:
    part = Part("p", v=1)
    kernel.apply(Assembly("a", part=part))
    record = _record(kernel, "Assembly", "a", 0)
    assert "builds" not in record["document"]
    assert record["document"]["fields"]["part"] == {"$component": part.huuid}
    assert record["children"] == ["Part:p v0"]
    assert record["version"] == 0


def test_persists_across_reopen(store_path: Path) -> None:
    with aliquot.Kernel.open(str(store_path)) as kernel:
        kernel.apply(Widget("w", a=1, fn=send, arr=np.arange(5)))
    with aliquot.Kernel.open(str(store_path)) as kernel:
        loaded = kernel.load("Widget", "w")
        assert loaded == Widget("w", a=1, fn=send, arr=np.arange(5))
        assert kernel.apply(Widget("w", a=1, fn=send, arr=np.arange(5))).action == "same"


def test_readonly_kernel_refuses_apply_and_remove(store_path: Path) -> None:
    with aliquot.Kernel.open(str(store_path)) as kernel:
        kernel.apply(Widget("w", a=1))
    with aliquot.Kernel.open(str(store_path), readonly=True) as kernel:
        with pytest.raises(ComponentError, match=r"apply needs a writable store; .* is read-only"):
            kernel.apply(Widget("w", a=2))
        with pytest.raises(ComponentError, match="remove needs a writable store"):
            kernel.remove("Widget", "w")
        assert kernel.load(Widget, "w").a == 1
        assert kernel.show("Widget", "w") == [0]
    assert not [e for e in EVENTS if e[0] == "cleanup"]


# ---------------------------------------------------------------------------
# Nested components
# ---------------------------------------------------------------------------


def test_nested_components_are_stored_once_and_referenced(kernel: aliquot.Kernel) -> None:
    part = Part("p", v=1)
    applied = kernel.apply(Assembly("a", part=part, spare=part, parts=[part]))
    assert [(c.type, c.action) for c in applied.components] == [
        ("Part", "new"),
        ("Assembly", "new"),
    ]
    assert applied.component.type == "Assembly"
    assert kernel.show() == ["Assembly", "Part"]
    assert kernel.show("Part", "p") == [0]
    assert len(list(kernel.store.scan("components"))) == 2
    assert kernel.show("Part", "p", 0)["users"] == ["Assembly:a v0"]
    loaded = kernel.load(Assembly, "a")
    assert loaded.part == part and loaded.part is loaded.spare is loaded.parts[0]
    assert loaded.part.version == 0
    assert EVENTS == [("on_create", "p", 0), ("on_create", "a", 0)]  # children first
    _check_indexes(kernel)


def test_reapplying_a_tree_is_same_everywhere(kernel: aliquot.Kernel) -> None:
    kernel.apply(Assembly("a", part=Part("p", v=1)))
    EVENTS.clear()
    again = kernel.apply(Assembly("a", part=Part("p", v=1)))
    assert [c.action for c in again.components] == ["same", "same"]
    assert EVENTS == []


def test_a_child_breaking_change_breaks_the_parent(kernel: aliquot.Kernel) -> None:
    kernel.apply(Assembly("a", part=Part("p", v=1)))
    EVENTS.clear()
    applied = kernel.apply(Assembly("a", part=Part("p", v=2)))
    assert [(c.type, c.action, c.version, c.changed) for c in applied.components] == [
        ("Part", "breaking", 1, ("v",)),
        ("Assembly", "breaking", 1, ("part",)),
    ]
    assert EVENTS == [("on_create", "p", 1), ("on_create", "a", 1)]
    assert kernel.load(Assembly, "a", version=0).part.v == 1
    assert kernel.load(Assembly, "a", version=1).part.v == 2
    assert kernel.show("Assembly", "a", 0)["children"] == ["Part:p v0"]
    assert kernel.show("Assembly", "a", 1)["children"] == ["Part:p v1"]
    _check_indexes(kernel)


def test_a_stored_child_can_be_referenced_by_a_new_parent(kernel: aliquot.Kernel) -> None:
    kernel.apply(Part("p", v=1))
    applied = kernel.apply(Assembly("a", part=Part("p", v=1)))
    assert [c.action for c in applied.components] == ["same", "new"]
    assert kernel.show("Part", "p", 0)["users"] == ["Assembly:a v0"]


# ---------------------------------------------------------------------------
# remove
# ---------------------------------------------------------------------------


def test_remove_calls_cleanup_and_deletes_everything(kernel: aliquot.Kernel) -> None:
    kernel.apply(Widget("w", a=1, arr=np.arange(3)))
    kernel.apply(Widget("w", a=2, arr=np.arange(3)))
    digest = _digest(Widget("w", a=1, arr=np.arange(3)), "arr")
    EVENTS.clear()
    report = kernel.remove("Widget", "w")
    assert [e for e in EVENTS if e[0] == "cleanup"] == [("cleanup", "w", 1), ("cleanup", "w", 0)]
    assert sorted(report["removed"]) == [0, 1]
    assert (report["type"], report["identifier"]) == ("Widget", "w")
    assert (report["cleanup_errors"], report["blobs_kept"], report["users"]) == ([], [], [])
    assert report["blobs_deleted"] == 1
    assert not kernel.store.has_value(digest)
    assert kernel.show() == []
    for space in ("components", "component_uuids", "component_blobs", "component_users"):
        assert list(kernel.store.scan(space)) == [], space
    with pytest.raises(ComponentNotFoundError):
        kernel.load(Widget, "w")
    with pytest.raises(ComponentNotFoundError):
        kernel.remove("Widget", "w")


def test_remove_by_object_uses_that_object(kernel: aliquot.Kernel) -> None:
    w = Widget("w", a=1)
    kernel.apply(w)
    cleaned: list[int] = []
    w.__dict__["cleanup"] = lambda: cleaned.append(id(w))
    report = kernel.remove(w)
    assert cleaned == [id(w)]
    assert report["removed"] == [0]
    assert kernel.show() == []


def test_remove_a_single_version(kernel: aliquot.Kernel) -> None:
    kernel.apply(Widget("w", a=1, arr=np.arange(3)))
    kernel.apply(Widget("w", a=2, arr=np.arange(3) + 1))
    old_digest = _digest(Widget("w", a=1, arr=np.arange(3)), "arr")
    EVENTS.clear()
    report = kernel.remove("Widget", "w", version=0)
    assert report["removed"] == [0]
    assert [e for e in EVENTS if e[0] == "cleanup"] == [("cleanup", "w", 0)]
    assert kernel.show("Widget", "w") == [1]
    assert kernel.load(Widget, "w").a == 2
    assert not kernel.store.has_value(old_digest)
    with pytest.raises(ComponentNotFoundError, match=r"version 0 .*stored versions: 1"):
        kernel.load(Widget, "w", version=0)
    with pytest.raises(ComponentNotFoundError, match=r"version 5 .*stored versions: 1"):
        kernel.remove("Widget", "w", version=5)
    _check_indexes(kernel)


def test_shared_blob_survives_until_the_last_user_is_removed(kernel: aliquot.Kernel) -> None:
    shared = np.arange(1000, dtype=np.float64)
    kernel.apply(Widget("w1", a=1, arr=shared, fn=send))
    kernel.apply(Widget("w2", a=2, arr=shared.copy(), fn=send))
    arr_digest = _digest(Widget("w1", a=1, arr=shared), "arr")
    fn_digest = kernel.show("Widget", "w1", 0)["fields"]["fn"]["$blob"]["digest"]
    assert kernel.show("Widget", "w2", 0)["fields"]["fn"]["$blob"]["digest"] == fn_digest
    assert {arr_digest, fn_digest} <= kernel.live_values()
    report = kernel.remove("Widget", "w1")
    assert report["blobs_deleted"] == 0
    assert kernel.store.has_value(arr_digest) and kernel.store.has_value(fn_digest)
    assert np.array_equal(kernel.load(Widget, "w2").arr, shared)
    assert kernel.load(Widget, "w2").fn is send
    report = kernel.remove("Widget", "w2")
    assert report["blobs_deleted"] == 2
    assert not kernel.store.has_value(arr_digest)
    assert not kernel.store.has_value(fn_digest)
    assert not ({arr_digest, fn_digest} & kernel.live_values())


def test_blob_shared_by_two_versions_survives_removing_one(kernel: aliquot.Kernel) -> None:
    arr = np.arange(50)
    kernel.apply(Widget("w", a=1, arr=arr))
    kernel.apply(Widget("w", a=2, arr=arr))
    digest = _digest(Widget("w", a=1, arr=arr), "arr")
    assert kernel.remove("Widget", "w", version=1)["blobs_deleted"] == 0
    assert kernel.store.has_value(digest)
    assert np.array_equal(kernel.load(Widget, "w").arr, arr)


def test_blobs_are_kept_while_another_handle_has_the_store_open(store_path: Path) -> None:
    with aliquot.Kernel.open(str(store_path)) as kernel:
        kernel.apply(Widget("w", a=1, arr=np.arange(7)))
        digest = _digest(Widget("w", a=1, arr=np.arange(7)), "arr")
        with aliquot.Kernel.open(str(store_path)) as other:
            report = kernel.remove("Widget", "w")
            assert other.show() == []
        assert report["blobs_deleted"] == 0
        assert report["blobs_kept"] == [digest]
        assert "another handle" in report["note"]
        assert kernel.store.has_value(digest)
        assert digest not in kernel.live_values()  # `store gc --values` may free it


PAYLOAD = bytes(range(256)) * 4


@aliquot.task(outputs=["payload"])
def make_payload() -> bytes:
    return PAYLOAD


def test_a_blob_a_run_also_holds_is_kept(kernel: aliquot.Kernel) -> None:
    run = kernel.run([make_payload])
    digest = run.nodes["make_payload"].outputs["payload"].digest
    kernel.apply(Widget("w", a=1, extra=PAYLOAD))
    assert _digest(Widget("w", a=1, extra=PAYLOAD), "extra") == digest
    report = kernel.remove("Widget", "w")
    assert report["blobs_kept"] == [digest]
    assert report["blobs_deleted"] == 0
    assert kernel.store.has_value(digest)
    assert digest in kernel.live_values()


def test_gc_values_keeps_what_components_reference(kernel: aliquot.Kernel) -> None:
    old, new = np.arange(20), np.arange(20) * 3
    kernel.apply(Widget("w", a=1, extra=old, arr=np.ones(4)))
    kernel.apply(Widget("w", a=1, extra=new, arr=np.ones(4)))  # update: `old` is unreferenced
    old_digest = _digest(Widget("w", a=1, extra=old), "extra")
    kept = {
        _digest(Widget("w", a=1, extra=new), "extra"),
        _digest(Widget("w", a=1, arr=np.ones(4)), "arr"),
    }
    live = kernel.live_values()
    assert kept <= live and old_digest not in live
    kernel.store.gc(live_values=live)
    assert not kernel.store.has_value(old_digest)
    assert all(kernel.store.has_value(d) for d in kept)
    loaded = kernel.load(Widget, "w")
    assert np.array_equal(loaded.extra, new) and np.array_equal(loaded.arr, np.ones(4))


def test_removing_a_used_component_is_refused_naming_the_user(kernel: aliquot.Kernel) -> None:
    kernel.apply(Assembly("a", part=Part("p", v=1)))
    EVENTS.clear()
    with pytest.raises(
        ComponentInUseError,
        match=r"Part:p is used by Assembly:a v0; remove it first, or pass force=True",
    ):
        kernel.remove("Part", "p")
    assert EVENTS == []  # not even cleanup ran
    assert kernel.show("Part", "p") == [0]
    assert kernel.load(Assembly, "a").part.v == 1
    report = kernel.remove("Part", "p", force=True)
    assert report["users"] == ["Assembly:a v0"]
    assert report["removed"] == [0]
    assert kernel.show() == ["Assembly"]


def test_in_use_lists_every_user(kernel: aliquot.Kernel) -> None:
    part = Part("p", v=1)
    kernel.apply(Assembly("a1", part=part))
    kernel.apply(Assembly("a2", parts=[part]))
    with pytest.raises(
        ComponentInUseError, match=r"used by Assembly:a1 v0, Assembly:a2 v0; remove them"
    ):
        kernel.remove(Part, "p")


def test_removing_the_parent_frees_the_child(kernel: aliquot.Kernel) -> None:
    kernel.apply(Assembly("a", part=Part("p", v=1)))
    kernel.remove("Assembly", "a")
    assert kernel.show("Part", "p", 0)["users"] == []
    assert kernel.remove("Part", "p")["removed"] == [0]
    assert kernel.show() == []


def test_an_unused_old_child_version_can_be_removed(kernel: aliquot.Kernel) -> None:
    kernel.apply(Assembly("a", part=Part("p", v=1)))
    kernel.apply(Assembly("a", part=Part("p", v=2)))
    with pytest.raises(ComponentInUseError, match="Assembly:a v0"):
        kernel.remove("Part", "p", version=0)
    kernel.remove("Assembly", "a", version=0)
    assert kernel.remove("Part", "p", version=0)["removed"] == [0]
    with pytest.raises(ComponentInUseError, match="Assembly:a v1"):
        kernel.remove("Part", "p")


def test_cleanup_failure_removes_nothing(kernel: aliquot.Kernel) -> None:
    kernel.apply(Widget("w", a=1, arr=np.arange(3)))
    kernel.apply(Widget("w", a=2, arr=np.arange(3), fail_cleanup=True))
    digest = _digest(Widget("w", a=1, arr=np.arange(3)), "arr")
    before = _dump(kernel)
    with pytest.raises(
        ComponentError,
        match=r"Widget:w v1: cleanup failed: RuntimeError: cannot clean w; nothing was removed "
        r"\(pass force=True",
    ):
        kernel.remove("Widget", "w")
    assert _dump(kernel) == before
    assert kernel.show("Widget", "w") == [0, 1]
    assert kernel.store.has_value(digest)
    report = kernel.remove("Widget", "w", force=True)
    assert report["cleanup_errors"] == ["Widget:w v1: cleanup failed: RuntimeError: cannot clean w"]
    assert sorted(report["removed"]) == [0, 1]
    assert kernel.show() == []
    assert not kernel.store.has_value(digest)


def test_remove_argument_errors(kernel: aliquot.Kernel) -> None:
    with pytest.raises(ComponentError, match="name the identifier"):
        kernel.remove("Widget")
    with pytest.raises(ComponentError, match="takes a component or its type"):
        kernel.remove(42, "w")
    with pytest.raises(ComponentNotFoundError, match="Widget:w"):
        kernel.remove(Widget, "w")


def test_removed_object_is_no_longer_stored(kernel: aliquot.Kernel) -> None:
    w = Widget("w", a=1)
    kernel.apply(w)
    kernel.remove(w)
    again = kernel.apply(w)
    assert (again.action, again.version) == ("new", 0)


def test_uuid_index_survives_removing_a_version_with_the_same_uuid(
    kernel: aliquot.Kernel,
) -> None:
    v0 = kernel.apply(Widget("w", a=1))
    kernel.apply(Widget("w", a=2))
    v2 = kernel.apply(Widget("w", a=1))
    assert (v2.action, v2.version, v2.component.uuid) == ("breaking", 2, v0.component.uuid)
    kernel.remove("Widget", "w", version=2)
    assert kernel.show("Widget", "w") == [0, 1]
    assert kernel.load(Widget, uuid=v0.component.uuid).version == 0
    _check_indexes(kernel)


# ---------------------------------------------------------------------------
# Trust: pickled blobs are signed per store
# ---------------------------------------------------------------------------

_UNPICKLED: list[str] = []


def _unpickled(path: str) -> None:
    Path(path).write_text("ran")
    _UNPICKLED.append(path)


class Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickled, (self.path,))


def _forged_pickle(value: Any) -> bytes:
    """A pickle envelope signed with a key that is not the store's."""
    key = b"\x42" * 32
    key_id = hashlib.sha256(key).digest()[:8]
    payload = pickle.dumps(value, protocol=5)
    magic = b"AQPK1\x00"
    mac = hmac.new(key, magic + key_id, hashlib.sha256)
    mac.update(payload)
    return magic + key_id + mac.digest() + payload


def test_a_swapped_pickle_blob_is_refused_unrun(kernel: aliquot.Kernel, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    kernel.apply(Widget("w", a=1, fn=send))
    forged = _forged_pickle(Canary(str(marker)))
    digest, _size = kernel.store.put_value(forged)
    key = b"Widget\0w\0" + (0).to_bytes(4, "big")
    record = orjson.loads(kernel.store.get("components", key))
    record["document"]["fields"]["fn"]["$blob"].update(digest=digest, size=len(forged))
    kernel.store.put("components", key, orjson.dumps(record))
    kernel.store.commit()
    with pytest.raises((UntrustedPayloadError, ComponentError), match=r"(?i)sign|key|trust"):
        kernel.load(Widget, "w")
    assert not marker.exists() and _UNPICKLED == []


def test_a_store_opened_with_another_key_refuses_its_pickles(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    with aliquot.Kernel.open(str(store_path)) as kernel:
        kernel.apply(Widget("w", a=1, extra=Canary(str(marker))))
    assert not marker.exists()
    monkeypatch.setenv("ALIQUOT_CONFIG_DIR", str(tmp_path / "elsewhere"))  # no key for it
    with aliquot.Kernel.open(str(store_path)) as kernel:
        with pytest.raises((UntrustedPayloadError, ComponentError), match=r"(?i)sign|key|trust"):
            kernel.load(Widget, "w")
    assert not marker.exists() and _UNPICKLED == []


def test_an_apply_that_fails_while_writing_blobs_leaves_nothing_to_commit(
    kernel: aliquot.Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure part-way (a blob write) stages no record: a later commit cannot save half."""
    kernel.apply(Widget("w", a=1, arr=np.arange(3)))
    before = _dump(kernel)
    calls: list[int] = []
    real = kernel.store.put_value

    def flaky(data: Any) -> tuple[str, int]:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(data)

    monkeypatch.setattr(kernel.store, "put_value", flaky)
    assembly = Assembly("asm", part=Part("p1", arr=np.ones(4)), spare=Part("p2", arr=np.zeros(5)))
    with pytest.raises(OSError, match="disk full"):
        kernel.apply(assembly)
    monkeypatch.undo()
    kernel.store.commit()
    assert _dump(kernel) == before
    assert kernel.show() == ["Widget"]
    assert assembly.version is None
    assert ("on_create", "p1", 0) not in EVENTS
