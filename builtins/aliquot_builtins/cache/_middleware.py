"""The cache: a plan participant that loads what it can, and middleware around every node.

Key (``spec/cache.md`` has the full contract). A node's *prefix* is the SHA-256
of its key material:

- the task's qualified name, kind, and the name and version of the plugin that
  owns its task type;
- its code fingerprint (own code, reached project functions and constants);
- for each bound parameter, its *data version*: the content digest (and
  serializer) of an upstream stored output, the canonical fingerprint of a
  constant, or -- for parameters the task type tracks by reads (a stage's
  ``record``) -- nothing here;
- for each output, the serializer asked for (or ``auto``).

Under one prefix there may be several entries: each records which parameters
the task *read* (paths such as ``record.params.n``) and their fingerprints. An
entry is a hit when every read it recorded has the same fingerprint now, the
material stored with it equals the current material, its serializers are still
registered at the same versions, and its values are still in the store.

Early cutoff: an upstream node recomputed to the same bytes has the same data
version, so its downstream still hits. Errors are never cached.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from aliquot import ArtifactRef, Outcome, Ref, Unfingerprintable, fingerprint

from ._fingerprint import CodeFingerprints, SourceFingerprints, digest

if TYPE_CHECKING:
    from aliquot import Kernel, Node, NodeContext, Plan, TaskSpec
    from aliquot.abc import Handler

FORMAT: Final = 2
SPACE: Final = "cache"
SLOTS: Final = "cache_slots"
PATHS: Final = "cache_paths"
#: Paths indexes already read, per store, kept across runs in this process (this process
#: updates them when it writes; another process's later writes can only cause a miss).
_PATHS_SEEN: dict[str, dict[bytes, dict[str, Any]]] = {}
_PATHS_SEEN_LIMIT: Final = 200_000
#: A material whose entries read more different sets of paths than this is not indexed.
MAX_PATH_SETS: Final = 16
_MISSING: Final = object()


class Material:
    """A node's key material: the document, its canonical bytes, and their SHA-256."""

    __slots__ = ("blob", "doc", "prefix")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.blob = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        self.prefix = hashlib.sha256(self.blob).digest()


_ENTRY_HEAD: Final = struct.Struct(">BI")


def encode_entry(material: Material, doc: Mapping[str, Any]) -> bytes:
    """An entry as stored: format byte, the material's canonical bytes, then the rest as JSON.

    The material is kept verbatim so a hit compares it byte for byte (never a wrong
    value from a hash collision) without parsing it."""
    blob = material.blob
    return _ENTRY_HEAD.pack(FORMAT, len(blob)) + blob + orjson.dumps(doc)


def decode_entry(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """``(material bytes, document)`` of a stored entry; ValueError if it is not one."""
    if len(raw) < _ENTRY_HEAD.size:
        raise ValueError("truncated cache entry")
    fmt, size = _ENTRY_HEAD.unpack_from(raw)
    if fmt != FORMAT:
        raise ValueError(f"cache entry format {fmt} (this plugin reads {FORMAT})")
    start = _ENTRY_HEAD.size
    blob = raw[start : start + size]
    if len(blob) != size:
        raise ValueError("truncated cache entry")
    doc: dict[str, Any] = orjson.loads(raw[start + size :])
    return blob, doc


class Entry:
    """A stored cache entry (decoded)."""

    __slots__ = ("doc", "key")

    def __init__(self, key: bytes, doc: dict[str, Any]) -> None:
        self.key = key
        self.doc = doc

    @property
    def outputs(self) -> dict[str, ArtifactRef]:
        return {k: ArtifactRef.from_json(v) for k, v in self.doc["outputs"].items()}

    @property
    def run(self) -> str:
        return str(self.doc.get("run", "?"))

    def reason(self, node: Node, run_id: str) -> str:
        """Why a node that got as far as running was served by this entry."""
        source = self.doc.get("node")
        where = "earlier in this run" if self.run == run_id else f"from run {self.run}"
        if source and source != node.id:
            where += f", by {source}"
        if node.deps:
            where += "; upstream unchanged"
        return f"cached ({where})"


def entry_prefix(prefix: bytes) -> bytes:
    return b"e" + prefix


_NO_READS: Final = hashlib.sha256(orjson.dumps([])).digest()


def entry_key(prefix: bytes, reads: Mapping[str, str]) -> bytes:
    if not reads:
        return b"e" + prefix + _NO_READS
    return b"e" + prefix + hashlib.sha256(orjson.dumps(sorted(reads.items()))).digest()


def slot_of(node: Node) -> str:
    """Where a node lives across runs (task and labels): what explain compares with."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
    return f"{node.task.name}|{labels}|{node.id}"


def _resolve_path(bindings: Mapping[str, Any], path: str) -> Any:
    """The value at a read path: ``record.params.n``, ``records.0.name`` (list index),
    ``record.params.key`` (mapping item). Raises KeyError/AttributeError when it is gone."""
    first, _, rest = path.partition(".")
    value = bindings[first]
    for part in rest.split(".") if rest else ():
        if isinstance(value, (list, tuple)) and part.isdigit():
            try:
                value = value[int(part)]
            except IndexError:
                raise KeyError(path) from None
        elif isinstance(value, Mapping) and part != "__class__":
            value = value[part]
        else:
            value = getattr(value, part)
    return value


class RunCache:
    """Per-run state: code fingerprints, plugin versions, and the store."""

    def __init__(self, kernel: Kernel, options: Mapping[str, Any]) -> None:
        self.kernel = kernel
        self.store = kernel.store
        self.code = CodeFingerprints(
            sources=SourceFingerprints(kernel.store, writable=not kernel.readonly)
        )
        self.versions = {p.name: p.version for p in kernel.plugins}
        self.options = dict(options)
        self.overwrite_all = bool(options.get("overwrite"))
        stages = options.get("overwrite_stage") or ()
        self.overwrite_stages = {stages} if isinstance(stages, str) else set(stages)
        # Bound objects live as long as the plan (which holds the graph), so ids are stable.
        self._read_memo: dict[tuple[int, str], str] = {}
        # The paths index of each material looked up in this run (prefix -> index).
        self._paths = _PATHS_SEEN.setdefault(kernel.store.store_id, {})
        if len(self._paths) > _PATHS_SEEN_LIMIT:
            self._paths.clear()
        # Per task spec: (task, task type, code, code parts, outputs, by-reads names).
        self._static: dict[int, tuple[Any, ...]] = {}
        self._task_type_ids: dict[str, str] = {}
        self._serializer_versions = {
            name: str(self.kernel.serializers.get(name).version)
            for name in self.kernel.serializers.names()
        }

    # ------------------------------------------------------------ material

    def task_type_id(self, kind: str) -> str:
        found = self._task_type_ids.get(kind)
        if found is None:
            found = self._task_type_ids[kind] = self._task_type_id(kind)
        return found

    def _task_type_id(self, kind: str) -> str:
        registries = self.kernel.task_types
        if kind not in registries:
            return kind
        plugin = registries.entry(kind).plugin
        return f"{kind}:{plugin}@{self.versions.get(plugin) or '?'}"

    def code_of(self, spec: TaskSpec) -> tuple[str, dict[str, Any]]:
        if spec.version is not None:
            return digest(["version", spec.version]), {"version": spec.version}
        return self.code.of(spec.fn)

    def _static_of(self, spec: TaskSpec) -> tuple[Any, ...]:
        static = self._static.get(id(spec))
        if static is None:
            code, parts = self.code_of(spec)
            static = self._static[id(spec)] = (
                spec.name,
                self.task_type_id(spec.kind),
                code,
                parts,
                {o.name: o.serializer or "auto" for o in spec.outputs},
                frozenset(spec.extra.get("cache_by_reads", ())),
                spec,  # keeps id(spec) from being reused while this memo lives
            )
        return static

    def material(
        self,
        node: Node,
        refs_of: Mapping[str, Mapping[str, ArtifactRef]],
        values: Mapping[str, Any],
    ) -> tuple[Material, dict[str, Any]]:
        """``(material, code parts)`` for a node; raises Unfingerprintable."""
        task, task_type, code, parts, outputs, by_reads, _ = self._static_of(node.task)
        inputs: dict[str, str] = {}
        for name, binding in node.bindings.items():
            if name in by_reads:
                # Tracked by reads; a list's length is its shape (records added or removed).
                inputs[name] = (
                    f"reads:{len(binding)}" if isinstance(binding, (list, tuple)) else "reads"
                )
            elif type(binding) is Ref:
                inputs[name] = self._data_version(binding, refs_of, values, name)
            elif name in node.nested:
                nested = self._nested(binding, refs_of, values.get(name, _MISSING))
                inputs[name] = "nested:" + digest(nested)
            else:
                inputs[name] = "value:" + self.code.value_fp(binding)
        material = {
            "format": FORMAT,
            "task": task,
            "task_type": task_type,
            "code": code,
            "inputs": inputs,
            "outputs": outputs,
        }
        return Material(material), parts

    def _data_version(
        self,
        ref: Ref,
        refs_of: Mapping[str, Mapping[str, ArtifactRef]],
        values: Mapping[str, Any],
        name: str,
    ) -> str:
        artifact = refs_of.get(ref.node, {}).get(ref.output)
        if artifact is not None:
            return f"data:{artifact.serializer}:{artifact.digest}"
        if name not in values:
            raise Unfingerprintable(f"input {name!r} ({ref}) has no stored version yet")
        return "value:" + self.code.value_fp(values[name])

    def _nested(
        self, binding: Any, refs_of: Mapping[str, Mapping[str, ArtifactRef]], value: Any
    ) -> Any:
        if type(binding) is Ref:
            artifact = refs_of.get(binding.node, {}).get(binding.output)
            if artifact is not None:
                return ["data", artifact.serializer, artifact.digest]
            if value is _MISSING:
                raise Unfingerprintable(f"{binding} has no stored version yet")
            return ["value", fingerprint(value)]
        if isinstance(binding, (list, tuple)):
            items = value if isinstance(value, (list, tuple)) else [_MISSING] * len(binding)
            return [
                type(binding).__name__,
                [self._nested(b, refs_of, v) for b, v in zip(binding, items, strict=False)],
            ]
        if isinstance(binding, dict):
            got = value if isinstance(value, dict) else {}
            pairs = [
                [fingerprint(k), self._nested(v, refs_of, got.get(k, _MISSING))]
                for k, v in binding.items()
            ]
            pairs.sort()
            return ["dict", pairs]
        return ["value", fingerprint(binding)]

    # ------------------------------------------------------------ lookup

    def lookup(
        self, node: Node, material: Material, *, verify: bool = True
    ) -> tuple[Entry | None, list[str]]:
        """The matching entry, or None and why the candidates do not match.

        Entries are keyed by the material and the fingerprints of what they read, and
        space ``cache_paths`` lists, per material, the sets of paths its entries read:
        a lookup computes the key of each set from the current bindings and reads it
        directly (usually one get), whatever the number of entries. No index means no
        entry; past its size limit, it scans the entries under the material.
        """
        prefix = material.prefix
        index = self._paths.get(prefix)
        if index is None:
            raw = self.store.get(PATHS, prefix)
            index = orjson.loads(raw) if raw is not None else {"missing": True}
            self._paths[prefix] = index
        if "sets" in index:
            return self._lookup_direct(node, material, prefix, index["sets"], verify)
        if index.get("overflow"):
            return self._lookup_scan(node, material, prefix, verify)
        return None, []  # every entry is indexed when it is stored: none has this material

    def _lookup_direct(
        self,
        node: Node,
        material: Material,
        prefix: bytes,
        path_sets: list[list[str]],
        verify: bool,
    ) -> tuple[Entry | None, list[str]]:
        why: list[str] = []
        for paths in path_sets:
            try:
                reads = {path: self.read_fp(node, path) for path in paths}
            except (KeyError, AttributeError, Unfingerprintable):
                continue  # this entry read something this node does not have
            key = entry_key(prefix, reads)
            raw = self.store.get(SPACE, key)
            if raw is None:
                continue
            entry, problem = self._check(key, raw, node, material, verify)
            if entry is not None:
                return entry, []
            why.append(problem)
        return None, why

    def _lookup_scan(
        self, node: Node, material: Material, prefix: bytes, verify: bool
    ) -> tuple[Entry | None, list[str]]:
        why: list[str] = []
        for key, raw in self.store.scan(SPACE, entry_prefix(prefix)):
            entry, problem = self._check(key, raw, node, material, verify)
            if entry is not None:
                return entry, []
            why.append(problem)
        return None, why

    def _check(
        self, key: bytes, raw: bytes, node: Node, material: Material, verify: bool = True
    ) -> tuple[Entry | None, str]:
        """The entry if it is a hit for ``node``, else why not."""
        try:
            blob, doc = decode_entry(raw)
        except ValueError as exc:
            return None, f"an unreadable cache entry ({exc})"
        if blob != material.blob:
            return None, "an entry with this key has other key material (a hash collision?)"
        changed = self.changed_reads(node, doc.get("reads") or {})
        if changed:
            return None, "; ".join(changed)
        problem = self._usable(doc, verify)
        if problem:
            return None, problem
        return Entry(key, doc), ""

    def read_fp(self, node: Node, path: str) -> str:
        """The fingerprint of what ``path`` reads now (memoized per bound object and path)."""
        first = path.partition(".")[0]
        key = (id(node.bindings[first]), path)
        memo = self._read_memo
        found = memo.get(key)
        if found is None:
            found = memo[key] = self.code.value_fp(_resolve_path(node.bindings, path))
        return found

    def changed_reads(self, node: Node, reads: Mapping[str, str]) -> list[str]:
        changed = []
        for path, recorded in sorted(reads.items()):
            try:
                now = self.read_fp(node, path)
            except (KeyError, AttributeError):
                changed.append(f"parameter {path} no longer exists")
                continue
            except Unfingerprintable:
                changed.append(f"parameter {path} can no longer be fingerprinted")
                continue
            if now != recorded:
                changed.append(f"parameter {path} changed")
        return changed

    def _usable(self, doc: Mapping[str, Any], values: bool = True) -> str | None:
        """Why an entry cannot serve (a serializer gone or changed; with ``values``, a
        stored value gone), or None."""
        versions = self._serializer_versions
        for name, ref in doc["outputs"].items():
            version = versions.get(ref["serializer"])
            if version is None and ref["serializer"] in self.kernel.serializers:
                version = versions[ref["serializer"]] = str(
                    self.kernel.serializers.get(ref["serializer"]).version
                )
            if version is None:
                return (
                    f"output {name!r} was stored by serializer {ref['serializer']!r}, which is gone"
                )
            if version != ref["serializer_version"]:
                return (
                    f"serializer {ref['serializer']!r} of output {name!r} changed version "
                    f"({ref['serializer_version']} -> {version})"
                )
            if values and not self.store.has_value(ref["digest"]):
                return f"the stored value of output {name!r} is gone"
        return None

    def values_gone(self, outputs: Mapping[str, ArtifactRef]) -> str | None:
        for name, ref in outputs.items():
            if not self.store.has_value(ref.digest):
                return f"the stored value of output {name!r} is gone"
        return None

    # ------------------------------------------------------------ explaining

    def why_missed(self, node: Node, current: Material, parts: Mapping[str, Any]) -> list[str]:
        """What changed since the last entry of this node's slot."""
        raw = self.store.get(SLOTS, _slot_key(slot_of(node)))
        if raw is None:
            return ["no earlier result for this node"]
        material = current.doc
        last = orjson.loads(raw)
        before = last.get("material") or {}
        reasons = []
        if before.get("format") != material.get("format"):
            reasons.append("the cache format changed")
        if before.get("task_type") != material.get("task_type"):
            old, new = before.get("task_type"), material.get("task_type")
            reasons.append(f"task type plugin changed ({old} -> {new})")
        if before.get("code") != material.get("code"):
            reasons.extend(_code_changes(last.get("code_parts") or {}, parts, node.task.short_name))
        old_inputs, new_inputs = before.get("inputs") or {}, material.get("inputs") or {}
        for name in sorted(set(old_inputs) | set(new_inputs)):
            if old_inputs.get(name) != new_inputs.get(name):
                if name not in old_inputs:
                    reasons.append(f"input {name} is now given (its default applied before)")
                elif name not in new_inputs:
                    reasons.append(f"input {name} is no longer given (its default applies)")
                else:
                    reasons.append(
                        f"input {name} changed ({_short(old_inputs[name])} -> "
                        f"{_short(new_inputs[name])})"
                    )
        if before.get("outputs") != material.get("outputs"):
            reasons.append("the outputs or their serializers changed")
        if not reasons:
            reasons.extend(self.changed_reads(node, last.get("reads") or {}))
        return reasons or ["the earlier result is no longer usable"]

    def miss_reasons(
        self,
        node: Node,
        material: Material,
        parts: Mapping[str, Any],
        lookup_why: list[str],
    ) -> list[str]:
        """Why a node missed: what changed since its own last result; when nothing did,
        why that result could not be used (a serializer version, a value gone)."""
        reasons = self.why_missed(node, material, parts)
        if reasons == ["the earlier result is no longer usable"] and lookup_why:
            return list(dict.fromkeys(lookup_why))
        return reasons

    # ------------------------------------------------------------ storing

    def store_entry(
        self,
        node: Node,
        material: Material,
        parts: Mapping[str, Any],
        reads: Mapping[str, str],
        outputs: Mapping[str, ArtifactRef],
        run_id: str,
        duration: float,
    ) -> bytes:
        prefix = material.prefix
        key = entry_key(prefix, reads)
        self._index_paths(prefix, sorted(reads))
        slot = slot_of(node)
        doc = {
            "format": FORMAT,
            "task": node.task.name,
            "slot": slot,
            "node": node.id,
            "reads": dict(reads),
            "outputs": {name: ref.to_json() for name, ref in outputs.items()},
            "run": run_id,
            "created": time.time(),
            "duration": duration,
        }
        self.store.put(SPACE, key, encode_entry(material, doc))
        slot_doc = {
            "slot": slot,
            "entry": key.hex(),
            "material": material.doc,
            "code_parts": dict(parts),
            "reads": dict(reads),
            "run": run_id,
        }
        self.store.put(SLOTS, _slot_key(slot), orjson.dumps(slot_doc))
        return key

    def _index_paths(self, prefix: bytes, paths: list[str]) -> None:
        known = self._paths.get(prefix)
        if known is not None and (known.get("overflow") or paths in known.get("sets", ())):
            return
        raw = self.store.get(PATHS, prefix)
        index = orjson.loads(raw) if raw is not None else {"sets": []}
        if index.get("overflow") or paths in index["sets"]:
            return
        if len(index["sets"]) >= MAX_PATH_SETS:
            index = {"overflow": True}  # too varied to index: lookups scan
        else:
            index["sets"].append(paths)
        self.store.put(PATHS, prefix, orjson.dumps(index))
        self._paths[prefix] = index

    def read_fingerprints(self, node: Node, paths: list[str]) -> dict[str, str] | None:
        """Fingerprints of what a task read; None when one cannot be fingerprinted."""
        out: dict[str, str] = {}
        for path in paths:
            try:
                out[path] = self.read_fp(node, path)
            except (KeyError, AttributeError, Unfingerprintable):
                return None
        return out

    def forced_by(self, spec: TaskSpec) -> str | None:
        if self.overwrite_all:
            return "overwrite requested (--overwrite)"
        if spec.short_name in self.overwrite_stages or spec.name in self.overwrite_stages:
            return f"overwrite requested (--overwrite-stage {spec.short_name})"
        return None


def _slot_key(slot: str) -> bytes:
    return hashlib.sha256(slot.encode()).digest()


def _short(version: str) -> str:
    kind, _, rest = version.rpartition(":")
    return f"{kind}:{rest[:10]}" if kind else version[:16]


def _code_changes(before: Mapping[str, Any], after: Mapping[str, Any], task: str) -> list[str]:
    reasons = []
    if "version" in before or "version" in after:
        old, new = before.get("version"), after.get("version")
        return [f"the declared version of {task} changed ({old} -> {new})"]
    if before.get("self") != after.get("self"):
        reasons.append(f"the code of {task} changed")
    old, new = before.get("reaches") or {}, after.get("reaches") or {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            short = name.rpartition(".")[2]
            if name not in old:
                reasons.append(f"it now calls {short}")
            elif name not in new:
                reasons.append(f"it no longer calls {short}")
            else:
                reasons.append(f"the code of {short} changed")
    old_c, new_c = before.get("constants") or {}, after.get("constants") or {}
    for name in sorted(set(old_c) | set(new_c)):
        if old_c.get(name) != new_c.get(name):
            reasons.append(f"constant {name.rpartition('.')[2]} changed")
    return reasons or [f"the code of {task} changed"]


class CacheMiddleware:
    """Serves nodes from the cache and stores what they compute (see the module docstring)."""

    name = "cache"
    order = 10  # outside retries and timeouts: a cached node needs neither
    handles = frozenset({"cache"})

    # ------------------------------------------------------------ planning

    def plan(self, plan: Plan, kernel: Kernel) -> None:
        state = RunCache(kernel, plan.options)
        nodes = plan.graph.nodes
        forced: set[str] = set()
        loaded: dict[str, Mapping[str, ArtifactRef]] = {}
        for nid in plan.order:
            node = nodes[nid]
            notes = plan.notes.setdefault(nid, {})
            notes["cache"] = state
            if nid in plan.decisions:  # another participant decided: leave it alone
                continue
            if node.task.options.cache is False:
                notes["cache_off"] = "caching is off for this task (cache=False)"
                plan.decide(nid, "run", notes["cache_off"])
                continue
            why_forced = state.forced_by(node.task)
            upstream_forced = [d for d in node.deps if d in forced]
            if why_forced or upstream_forced:
                forced.add(nid)
                notes["forced"] = why_forced or f"upstream {upstream_forced[0]!r} is overwritten"
                plan.decide(nid, "run", notes["forced"])
                continue
            waiting = [dep for dep in node.deps if dep not in loaded]
            if waiting:
                # Its key needs upstream results: decided when it runs (it may still hit).
                plan.decide(nid, "run", f"upstream {waiting[0]!r} runs first (may still hit)")
                continue
            try:
                material, parts = state.material(node, loaded, {})
            except Unfingerprintable as exc:
                notes["cache_off"] = f"not cached: {exc}"
                plan.decide(nid, "run", notes["cache_off"])
                continue
            # Values are checked below, only for loaded nodes whose values are used.
            entry, why = state.lookup(node, material, verify=False)
            if entry is None:
                notes["miss"] = state.miss_reasons(node, material, parts, why)
                plan.decide(nid, "run", "; ".join(notes["miss"]))
                continue
            loaded[nid] = entry.outputs
            plan.stored[nid] = loaded[nid]
            notes["entry"] = entry
            plan.decide(nid, "load", f"cached (from run {entry.run})")
        self._check_used_values(plan, state, loaded)

    @staticmethod
    def _check_used_values(
        plan: Plan, state: RunCache, loaded: dict[str, Mapping[str, ArtifactRef]]
    ) -> None:
        """Make sure the values of loaded nodes are in the store -- only for loaded nodes
        whose values will be used: targets, and inputs of nodes that run. A loaded node
        whose value is gone runs instead (its inputs are then used, and checked in turn).
        A loaded node nothing uses needs no value: its consumers were loaded too, and
        their results are valid for the data it had."""
        nodes = plan.graph.nodes
        seen: set[str] = set()
        stack = list(plan.target_nodes)
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            outputs = loaded.get(nid)
            if outputs is not None:
                gone = state.values_gone(outputs)
                if gone is None:
                    continue
                del loaded[nid]
                plan.stored.pop(nid, None)
                notes = plan.notes[nid]
                notes.pop("entry", None)
                notes["miss"] = [gone]
                plan.decide(nid, "run", gone)
            stack.extend(nodes[nid].deps)

    # ------------------------------------------------------------ running

    async def __call__(self, ctx: NodeContext, call_next: Handler) -> Outcome:
        notes = ctx.notes
        state: RunCache | None = notes.get("cache")
        if state is None:  # planned without this middleware (it was registered later)
            return await call_next(ctx)
        entry: Entry | None = notes.get("entry")
        if ctx.decision.action == "load":
            if entry is None:  # another participant planned it: it serves it
                return await call_next(ctx)
            ctx.info["cache"] = {"status": "hit", "run": entry.run, "key": entry.key.hex()}
            return Outcome("cached", refs=entry.outputs, reason=ctx.decision.reason)
        off = notes.get("cache_off")
        if off:
            ctx.info["cache"] = {"status": "off", "why": off}
            return await call_next(ctx)
        node = ctx.node
        try:
            material, parts = state.material(node, ctx.upstream_refs, ctx.inputs)
        except Unfingerprintable as exc:
            ctx.info["cache"] = {"status": "off", "why": f"not cached: {exc}"}
            return await call_next(ctx)
        forced = notes.get("forced")
        if forced:
            why = [forced]
        else:
            hit, why = state.lookup(node, material)
            if hit is not None:  # early cutoff, or a result another node made in this run
                ctx.info["cache"] = {"status": "hit", "run": hit.run, "key": hit.key.hex()}
                return Outcome("cached", refs=hit.outputs, reason=hit.reason(node, ctx.run.id))
            why = notes.get("miss") or state.miss_reasons(node, material, parts, why)
        started = time.perf_counter()
        outcome = await call_next(ctx)
        if outcome.status != "computed":
            return outcome  # errors are never cached
        duration = time.perf_counter() - started
        info = dict(outcome.info)
        reads = state.read_fingerprints(node, list(info.get("reads") or []))
        if reads is None:
            info["cache"] = {"status": "off", "why": "a parameter it read cannot be fingerprinted"}
            return _with(outcome, info=info)
        refs = dict(outcome.refs)
        for output in node.task.outputs:
            if output.name in refs or output.name not in outcome.values:
                continue
            try:
                refs[output.name] = await ctx.values.asave(
                    outcome.values[output.name], output.serializer
                )
            except Exception as exc:
                info["cache"] = {"status": "off", "why": f"output {output.name!r}: {exc}"}
                return _with(outcome, refs=refs, info=info)
        key = state.store_entry(node, material, parts, reads, refs, ctx.run.id, duration)
        info["cache"] = {"status": "miss", "why": why, "key": key.hex()}
        # Durable with the node's record: the scheduler commits slow nodes at once, and
        # the others with its group commit (about once a second).
        return _with(outcome, refs=refs, info=info)


def _with(
    outcome: Outcome,
    *,
    refs: Mapping[str, ArtifactRef] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Outcome:
    return Outcome(
        outcome.status,
        outcome.values,
        outcome.refs if refs is None else refs,
        outcome.reason,
        outcome.error,
        outcome.info if info is None else info,
    )
