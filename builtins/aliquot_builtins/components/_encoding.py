"""Encoding components: a JSON document for what JSON carries, blobs for the rest.

The document (``spec/component.schema.json``)::

    {"format": "aliquot.component/1", "type": "Notifier", "class": "pkg.mod:Notifier",
     "identifier": "n1", "uuid": "...", "hash": "...",
     "fields": {"a": 1, "c": {"k": 1}, "d": {"$blob": {...}}, "child": {"$component": "..."}},
     "builds": {"Child:c1:<uuid>": {...}}}

Field values are plain JSON where JSON can carry them exactly. Everything else
is a tagged object with exactly one key starting with ``$``:

- ``$blob``: a value serialized by the kernel's serializers and stored
  content-addressed; ``digest`` is the SHA-256 of the stored bytes, ``content``
  the SHA-256 of the same value serialized without any per-store key (so a
  pickled function has one identity in every store).
- ``$component``: a nested component, by ``huuid``; its document is in
  ``builds`` (in an encoded component) or stored on its own (in a store).
- ``$tuple``, ``$dict`` (a dict with a ``$`` key, escaped), ``$items`` (a dict
  with keys that are not strings), ``$int`` (beyond 64 bits), ``$float``
  (``nan``, ``inf``, ``-inf``).

Identity (``uuid``) hashes the type name, the identifier and the breaking
fields; ``hash`` hashes the class path and every field. Both hash the
*encoded* values -- blob content digests, child huuids -- never ``str()`` or
source text (Superduper's ``str(array)`` hashing gave two arrays one id).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, cast

import attrs
import orjson

from aliquot import AliquotError, SerializerContext

from ._component import Component, ComponentError

FORMAT: Final = "aliquot.component/1"
UUID_LENGTH: Final = 20
_TAGS: Final = frozenset({"$blob", "$component", "$tuple", "$dict", "$items", "$int", "$float"})
#: The context used to compute ``content`` digests: public and fixed, so that
#: signed formats (pickle) give the same bytes in every store.
CANONICAL_CTX: Final = SerializerContext("identity", lambda purpose: b"\0" * 32)

_DEFAULT: dict[str, Any] = {}
_DEFAULT_LOCK = threading.Lock()


def default_kernel() -> Any:
    """A process-wide ``memory://`` kernel, for encoding without a store."""
    with _DEFAULT_LOCK:
        if "kernel" not in _DEFAULT:
            import aliquot

            _DEFAULT["kernel"] = aliquot.Kernel.open("memory://")
        return _DEFAULT["kernel"]


@attrs.frozen
class Identity:
    uuid: str
    hash: str


@attrs.define
class Encoded:
    """An encoded component: its JSON ``document`` and the ``blobs`` it references."""

    document: dict[str, Any]
    blobs: dict[str, bytes] = attrs.field(factory=dict)

    def json(self) -> bytes:
        """The document as JSON bytes (orjson, keys in document order)."""
        return orjson.dumps(self.document, option=orjson.OPT_INDENT_2)

    @property
    def huuid(self) -> str:
        doc = self.document
        return f"{doc['type']}:{doc['identifier']}:{doc['uuid']}"


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _sha(data: Any) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def canonical(value: Any) -> Any:
    """An encoded field value as identity sees it: blobs by content digest only, and
    the pairs of a non-string-keyed dict in a fixed order (dicts are unordered)."""
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            inner = value[key]
            if key == "$blob":
                return {"$blob": inner["content"]}
            if key == "$dict":
                return {"$dict": {k: canonical(v) for k, v in inner.items()}}
            if key == "$items":
                pairs = [[canonical(k), canonical(v)] for k, v in inner]
                pairs.sort(key=lambda pair: orjson.dumps(pair[0], option=orjson.OPT_SORT_KEYS))
                return {"$items": pairs}
        return {k: canonical(v) for k, v in value.items()}
    return value


def _tagged(value: Any) -> Iterator[tuple[str, Any]]:
    """Every ``$blob`` and ``$component`` tag in an encoded value, as (tag, payload)."""
    if isinstance(value, list):
        for item in value:
            yield from _tagged(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            inner = value[key]
            if key in ("$blob", "$component"):
                yield key, inner
                return
            if key == "$dict":  # user data: its keys are never tags
                for item in inner.values():
                    yield from _tagged(item)
                return
        for item in value.values():
            yield from _tagged(item)


def identity_of(document: Mapping[str, Any], non_breaking: tuple[str, ...]) -> Identity:
    fields = {k: canonical(v) for k, v in document["fields"].items()}
    breaking = {k: v for k, v in fields.items() if k not in non_breaking}
    uuid = _sha([document["type"], document["identifier"], breaking])[:UUID_LENGTH]
    full = _sha([document["class"], document["type"], document["identifier"], fields])
    return Identity(uuid, full)


class _Encoder:
    """Encodes one component tree; nested components once each, by huuid."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.blobs: dict[str, bytes] = {}
        self.refs: dict[str, dict[str, Any]] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, Component] = {}
        self._active: set[int] = set()
        self._by_object: dict[int, str] = {}
        self._by_key: dict[tuple[str, str], tuple[str, Component]] = {}

    def component(self, component: Component) -> dict[str, Any]:
        """The document of ``component`` (children go to ``builds``)."""
        cls = type(component)
        if id(component) in self._active:
            raise ComponentError(
                f"{cls.__name__}({component.identifier!r}) contains itself: components form "
                "a tree, not a cycle"
            )
        self._active.add(id(component))
        fields: dict[str, Any] = {}
        for name in cls.fields:
            where = f"{cls.__name__}({component.identifier!r}).{name}"
            fields[name] = self.value(getattr(component, name), where)
        self._active.discard(id(component))
        doc: dict[str, Any] = {
            "format": FORMAT,
            "type": cls.type_name(),
            "class": class_path(cls),
            "identifier": component.identifier,
            "uuid": "",
            "hash": "",
            "fields": fields,
        }
        ident = identity_of(doc, cls.non_breaking)
        doc["uuid"] = ident.uuid
        doc["hash"] = ident.hash
        return doc

    def child(self, child: Component, where: str) -> str:
        seen = self._by_object.get(id(child))
        if seen is not None:
            return seen
        doc = self.component(child)
        huuid = f"{doc['type']}:{doc['identifier']}:{doc['uuid']}"
        key = (doc["type"], doc["identifier"])
        other = self._by_key.get(key)
        if other is not None and other[0] != doc["hash"]:
            raise ComponentError(
                f"{where}: two different {key[0]}:{key[1]} components in one tree; a "
                "type and identifier name one component"
            )
        self._by_key[key] = (doc["hash"], child)
        self._by_object[id(child)] = huuid
        self.objects[huuid] = child
        self.builds[huuid] = doc
        return huuid

    def value(self, value: Any, where: str) -> Any:
        kind = type(value)
        if kind is str:
            return value if _utf8(value) else {"$blob": self.blob(value, where)}
        if value is None or kind is bool:
            return value
        if kind is int:
            return value if -(2**63) <= value < 2**64 else {"$int": str(value)}
        if kind is float:
            if math.isfinite(value):
                return value
            return {"$float": "nan" if value != value else ("inf" if value > 0 else "-inf")}
        if kind is list:
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind is tuple:
            return {"$tuple": [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if kind is dict:
            if all(type(k) is str and _utf8(k) for k in value):
                inner = {k: self.value(v, f"{where}[{k!r}]") for k, v in value.items()}
                if any(k.startswith("$") for k in value):
                    return {"$dict": inner}
                return inner
            return {
                "$items": [
                    [self.value(k, f"{where} key"), self.value(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ]
            }
        if isinstance(value, Component):
            return {"$component": self.child(value, where)}
        return {"$blob": self.blob(value, where)}

    def blob(self, value: Any, where: str) -> dict[str, Any]:
        values = self.kernel.values
        used: list[str] = []

        def secret(purpose: str) -> bytes:
            used.append(purpose)
            return CANONICAL_CTX.secret(purpose)

        probe = SerializerContext(CANONICAL_CTX.store_id, secret)
        try:
            chosen, buffers = values.serializers.dumps(value, probe)
        except AliquotError as exc:
            raise ComponentError(f"{where}: cannot encode a {type(value).__name__}: {exc}") from exc
        canonical_bytes = b"".join(bytes(b) for b in buffers)
        content = hashlib.sha256(canonical_bytes).hexdigest()
        if used:  # the bytes depend on the store (a signature): serialize for this store
            _same, buffers = values.serializers.dumps(value, values.ctx, chosen)
            data = b"".join(bytes(b) for b in buffers)
        else:
            data = canonical_bytes
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        ref = {
            "digest": digest,
            "size": len(data),
            "serializer": chosen.name,
            "serializer_version": str(chosen.version),
            "type": _type_name(value),
            "content": content,
        }
        self.refs[digest] = ref
        return ref


def _utf8(text: str) -> bool:
    """Whether JSON can carry the string (not, e.g., one with a lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def encode(component: Component, kernel: Any = None) -> Encoded:
    """Encode ``component`` and everything it holds (see the module docstring)."""
    if not isinstance(component, Component):
        raise ComponentError(f"encode() takes a Component, not {type(component).__name__}")
    encoder = _Encoder(kernel if kernel is not None else default_kernel())
    doc = encoder.component(component)
    doc["builds"] = encoder.builds
    return Encoded(doc, encoder.blobs)


def encode_tree(
    component: Component, kernel: Any
) -> tuple[list[tuple[Component, dict[str, Any]]], dict[str, bytes]]:
    """Every component of the tree with its document, children before parents, and the blobs."""
    encoder = _Encoder(kernel)
    top = encoder.component(component)
    objects = encoder.objects
    ordered: list[tuple[Component, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(doc: dict[str, Any], obj: Component) -> None:
        for child in children_of(doc):
            if child not in seen:
                seen.add(child)
                visit(encoder.builds[child], objects[child])
        ordered.append((obj, doc))

    visit(top, component)
    return ordered, encoder.blobs


def children_of(doc: Mapping[str, Any]) -> list[str]:
    """huuids of the components ``doc``'s fields reference, in field order, once each."""
    found = dict.fromkeys(p for tag, p in _tagged(doc["fields"]) if tag == "$component")
    return list(found)


def blobs_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The blob references in ``doc``'s fields, once each by digest."""
    found: dict[str, dict[str, Any]] = {}
    for tag, payload in _tagged(doc["fields"]):
        if tag == "$blob":
            found.setdefault(payload["digest"], payload)
    return list(found.values())


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def import_class(path: str, type_name: str) -> type[Component]:
    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        hint = (
            f" (it was defined in a script: pass the class itself, kernel.load({type_name}, ...))"
            if module == "__main__" or module.startswith("aliquot_target_")
            else ""
        )
        raise ComponentError(
            f"cannot import component class {path} of {type_name}: {exc}{hint}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, Component)):
        raise ComponentError(f"{path} is not a Component class")
    return obj


class Decoder:
    """Rebuilds components from documents; blobs and children come from callbacks."""

    def __init__(
        self,
        kernel: Any,
        blob: Callable[[dict[str, Any]], Any],
        child: Callable[[str], Component],
        classes: Mapping[str, type[Component]] | None = None,
    ) -> None:
        self.kernel = kernel
        self._blob = blob
        self._child = child
        self.classes = dict(classes or {})

    def component(self, doc: Mapping[str, Any], cls: type[Component] | None = None) -> Component:
        check_document(doc)
        cls = cls or self.classes.get(doc["type"]) or import_class(doc["class"], doc["type"])
        if cls.type_name() != doc["type"]:
            raise ComponentError(
                f"{doc['type']}:{doc['identifier']} is stored as a {doc['type']}, not a "
                f"{cls.type_name()}"
            )
        where = f"{doc['type']}:{doc['identifier']}"
        unknown = [name for name in doc["fields"] if name not in cls.fields]
        if unknown:
            raise ComponentError(
                f"{where} was stored with field {unknown[0]!r}, which class "
                f"{class_path(cls)} no longer declares"
            )
        values = {name: self.value(raw, f"{where}.{name}") for name, raw in doc["fields"].items()}
        try:
            obj: Component = cast(Any, cls)(doc["identifier"], **values)
        except ComponentError:
            raise
        except TypeError as exc:
            raise ComponentError(
                f"cannot rebuild {where} with class {class_path(cls)}: {exc}"
            ) from exc
        obj.__dict__["_stored_uuid"] = doc["uuid"]
        return obj

    def value(self, raw: Any, where: str) -> Any:
        if isinstance(raw, list):
            return [self.value(v, where) for v in raw]
        if not isinstance(raw, dict):
            return raw
        if len(raw) == 1:
            (key,) = raw
            inner = raw[key]
            if key == "$blob":
                return self._blob(inner)
            if key == "$component":
                return self._child(inner)
            if key == "$tuple":
                return tuple(self.value(v, where) for v in inner)
            if key == "$dict":
                return {k: self.value(v, where) for k, v in inner.items()}
            if key == "$items":
                return {self.value(k, where): self.value(v, where) for k, v in inner}
            if key == "$int":
                return int(inner)
            if key == "$float":
                return float(inner)
            if key.startswith("$"):
                raise ComponentError(f"{where}: unknown tag {key!r} in an encoded component")
        return {k: self.value(v, where) for k, v in raw.items()}


def load_blob(
    kernel: Any, ref: Mapping[str, Any], data: bytes | memoryview | None, ctx: Any = None
) -> Any:
    """Decode one blob's bytes with its serializer (the kernel's trust rules apply)."""
    if data is None:
        raise ComponentError(
            f"blob {ref['digest'][:16]}… ({ref['type']}) is missing or failed its checksum "
            "(see `aliquot store verify`)"
        )
    if hashlib.sha256(data).hexdigest() != ref["digest"]:
        raise ComponentError(f"blob {ref['digest'][:16]}… does not match its digest")
    serializer = kernel.serializers.get(ref["serializer"])
    return serializer.loads(memoryview(data), ctx if ctx is not None else kernel.values.ctx)


def decode(
    encoded: Any, kernel: Any = None, *, expect: type[Component] | None = None, ctx: Any = None
) -> Component:
    """Rebuild the component of an :class:`Encoded` (or a ``(document, blobs)`` pair)."""
    kernel = kernel if kernel is not None else default_kernel()
    if isinstance(encoded, Encoded):
        doc, blobs = encoded.document, encoded.blobs
    elif isinstance(encoded, tuple) and len(encoded) == 2:
        doc, blobs = encoded
    else:
        raise ComponentError("decode() takes an Encoded (from encode()) or (document, blobs)")
    check_document(doc)
    if expect is not None and expect is not Component and doc["type"] != expect.type_name():
        raise ComponentError(
            f"{doc['type']}:{doc['identifier']} is stored as a {doc['type']}, not a "
            f"{expect.type_name()}"
        )
    builds = doc.get("builds") or {}
    built: dict[str, Component] = {}
    decoder: Decoder

    def child(huuid: str) -> Component:
        if huuid not in built:
            if huuid not in builds:
                raise ComponentError(f"the encoded component references {huuid}, not in builds")
            built[huuid] = decoder.component(builds[huuid])
        return built[huuid]

    def blob(ref: dict[str, Any]) -> Any:
        return load_blob(kernel, ref, blobs.get(ref["digest"]), ctx)

    classes = {expect.type_name(): expect} if expect is not None and expect is not Component else {}
    decoder = Decoder(kernel, blob, child, classes)
    return decoder.component(doc, classes.get(doc.get("type", "")))


def check_document(doc: Any) -> None:
    """Refuse documents that are not encoded components (before anything is decoded)."""
    if not isinstance(doc, Mapping):
        raise ComponentError("an encoded component is a JSON object")
    if doc.get("format") != FORMAT:
        raise ComponentError(
            f"not an encoded component: format is {doc.get('format')!r}, expected {FORMAT!r}"
        )
    for key in ("type", "class", "identifier", "uuid", "hash"):
        if not isinstance(doc.get(key), str):
            raise ComponentError(f"encoded component: {key!r} is missing or not a string")
    if not isinstance(doc.get("fields"), Mapping):
        raise ComponentError("encoded component: 'fields' is missing or not an object")


def identity(component: Component) -> Identity:
    """``uuid`` and ``hash`` of a component (encoded with the default kernel's serializers)."""
    doc = encode(component).document
    return Identity(doc["uuid"], doc["hash"])
