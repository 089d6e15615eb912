"""Task metadata from source text, without executing it.

A task-plugin file is parsed, never imported, when it is registered. Found:

- module-level functions decorated with ``register`` under any import spelling
  (``@register``, ``@pyplugs.register``, ``@aliquot.register``, with or without
  literal keyword arguments such as ``outputs=[...]``);
- module-level classes deriving from ``ArtifactTask`` (or Dioptra's name,
  ``ArtifactTaskInterface``), directly or through another class of the file.

Signatures are read as :func:`._register.derive` reads live functions:
annotations map to types (import aliases resolved: ``np.ndarray`` is
``numpy.ndarray``), ``*args``/``**kwargs`` are kept, outputs come from the
return annotation (a NamedTuple of the same file gives its field names).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import attrs

from aliquot import TaskDefinitionError

from ._errors import TaskPluginError
from ._register import InputInfo, InputKind, OutputInfo, Signature, apply_registration
from ._types import TypeTable, dotted, from_annotation_node

_REGISTER = {
    "aliquot.register",
    "aliquot.pyplugs.register",
    "aliquot_builtins.tasks.register",
}
_ARTIFACT_BASES = {
    "aliquot.ArtifactTask",
    "aliquot.ArtifactTaskInterface",
    "aliquot_builtins.artifacts.ArtifactTask",
    "aliquot_builtins.artifacts.ArtifactTaskInterface",
}
_REGISTER_KEYWORDS = {"name", "outputs", "inputs", "description"}


@attrs.frozen(eq=False)
class FoundFunction:
    #: The task's name (``register(name=...)``, else the function's).
    name: str
    #: The module-level function it calls.
    function: str
    line: int
    signature: Signature
    description: str | None
    decorated: bool


@attrs.frozen
class FoundArtifact:
    name: str
    line: int
    description: str | None


@attrs.frozen(eq=False)
class Analysis:
    functions: dict[str, FoundFunction]
    artifacts: dict[str, FoundArtifact]
    #: Every module-level function, decorated or not (explicit registration may name any).
    all_functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
    aliases: dict[str, str]
    namedtuples: dict[str, ast.ClassDef]
    #: Plugin-qualified modules the file may import from its own plugin (relative imports,
    #: anywhere in the file; ``from . import x`` lists both the package and ``x``).
    imports: tuple[str, ...] = ()


def parse(source: str, filename: str) -> ast.Module:
    """The file's syntax tree; it must also compile (``return`` outside a function...)."""
    try:
        tree = ast.parse(source, filename=filename)
        compile(tree, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{filename}:{exc.lineno}" if exc.lineno else filename
        raise TaskPluginError(
            f"{where}: syntax error: {exc.msg} (the file was not stored)"
        ) from None
    except ValueError as exc:  # null bytes
        raise TaskPluginError(f"{filename}: not Python source: {exc}") from None
    return tree


def _aliases(tree: ast.Module, module: str | None, package: bool) -> dict[str, str]:
    """Names bound at module level -> what they denote, as dotted paths.

    ``module`` is the file's plugin-qualified module (``hello_world.tasks``): classes the
    file defines and relative imports resolve under it, so a type named after them reads
    the same in every file of the plugin.
    """
    out: dict[str, str] = {}
    if module is not None:
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                out[node.name] = f"{module}.{node.name}"
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level and module is not None:
            parts = module.split(".")
            keep = len(parts) - node.level + (1 if package else 0)
            if keep < 1:
                continue
            base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            for alias in node.names:
                out[alias.asname or alias.name] = f"{base}.{alias.name}"
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    out[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _plugin_imports(tree: ast.Module, module: str | None, package: bool) -> tuple[str, ...]:
    if module is None:
        return ()
    plugin = module.split(".")[0]
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = module.split(".")
            keep = len(parts) - node.level + (1 if package else 0)
            if keep < 1:
                continue
            base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            found[base] = None
            for alias in node.names:
                found[f"{base}.{alias.name}"] = None
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == plugin:
                    found[alias.name] = None
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == plugin
        ):
            found[node.module] = None
            for alias in node.names:
                found[f"{node.module}.{alias.name}"] = None
    return tuple(found)


def _resolve(node: ast.expr, aliases: Mapping[str, str]) -> str | None:
    name = dotted(node)
    if name is None:
        return None
    head, dot, rest = name.partition(".")
    return aliases.get(head, head) + dot + rest


def analyze(
    source: str, filename: str, module: str | None = None, *, package: bool = False
) -> Analysis:
    """Every task the file defines (see the module docstring).

    ``module``: the file's plugin-qualified module name (``hello_world.tasks``);
    ``package``: the file is a package's ``__init__.py``.
    """
    tree = parse(source, filename)
    aliases = _aliases(tree, module, package)
    namedtuples: dict[str, ast.ClassDef] = {}
    artifacts: dict[str, FoundArtifact] = {}
    artifact_names: set[str] = set()
    functions: dict[str, FoundFunction] = {}
    all_functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [_resolve(b, aliases) for b in node.bases]
            if any(b in ("typing.NamedTuple", "NamedTuple") for b in bases):
                namedtuples[node.name] = node
            if any(b in _ARTIFACT_BASES or b in artifact_names for b in bases):
                artifact_names.update({node.name, aliases.get(node.name, node.name)})
                artifacts[node.name] = FoundArtifact(
                    node.name, node.lineno, ast.get_docstring(node)
                )
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            all_functions[node.name] = node
    analysis = Analysis(
        {}, artifacts, all_functions, aliases, namedtuples, _plugin_imports(tree, module, package)
    )
    for fname, node in all_functions.items():
        registration = _registration(node, aliases, filename)
        if registration is None:
            continue
        owner = f"{filename}:{node.lineno}: task {fname!r}"
        derived = derive_static(node, analysis)
        try:
            signature = apply_registration(
                derived,
                owner,
                inputs=registration.get("inputs"),
                outputs=registration.get("outputs"),
            )
        except TaskDefinitionError as exc:
            raise TaskPluginError(str(exc)) from None
        functions[fname] = FoundFunction(
            registration.get("name") or fname,
            fname,
            node.lineno,
            signature,
            registration.get("description") or ast.get_docstring(node),
            True,
        )
    functions_sorted = dict(sorted(functions.items(), key=lambda kv: kv[1].line))
    return attrs.evolve(analysis, functions=functions_sorted)


def _registration(
    node: ast.FunctionDef | ast.AsyncFunctionDef, aliases: Mapping[str, str], filename: str
) -> dict[str, Any] | None:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _resolve(target, aliases) not in _REGISTER:
            continue
        if not isinstance(decorator, ast.Call):
            return {}
        if decorator.args:
            raise TaskPluginError(
                f"{filename}:{decorator.lineno}: register() takes keyword arguments only"
            )
        found: dict[str, Any] = {}
        for kw in decorator.keywords:
            if kw.arg not in _REGISTER_KEYWORDS:
                continue  # task options (cache, retries...) take effect when imported
            try:
                found[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                raise TaskPluginError(
                    f"{filename}:{kw.value.lineno}: register({kw.arg}=...) must be a literal "
                    "to be read without running the file; give the registration explicitly "
                    "(function_tasks=[...]) instead"
                ) from None
        if "description" in found and not isinstance(found["description"], str):
            raise TaskPluginError(
                f"{filename}:{decorator.lineno}: register(description=...) must be text, not "
                f"{found['description']!r}"
            )
        if "name" in found and (
            not isinstance(found["name"], str) or not found["name"].isidentifier()
        ):
            raise TaskPluginError(
                f"{filename}:{decorator.lineno}: in a task plugin, register(name=...) must be "
                f"a plain identifier (it is prefixed by the plugin and file), not "
                f"{found['name']!r}"
            )
        return found
    return None


def derive_static(node: ast.FunctionDef | ast.AsyncFunctionDef, analysis: Analysis) -> Signature:
    """What :func:`._register.derive` would say of the live function."""
    table = TypeTable()
    aliases = analysis.aliases
    args = node.args

    def typ(annotation: ast.expr | None) -> Any:
        return "any" if annotation is None else from_annotation_node(annotation, aliases, table)

    inputs: list[InputInfo] = []
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for index, arg in enumerate(positional):
        kind: InputKind = "positional" if index < len(args.posonlyargs) else "positional_or_keyword"
        inputs.append(InputInfo(arg.arg, typ(arg.annotation), index < first_default, kind))
    if args.vararg is not None:
        inputs.append(
            InputInfo(args.vararg.arg, typ(args.vararg.annotation), False, "var_positional")
        )
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        inputs.append(InputInfo(arg.arg, typ(arg.annotation), default is None, "keyword"))
    if args.kwarg is not None:
        inputs.append(InputInfo(args.kwarg.arg, typ(args.kwarg.annotation), False, "var_keyword"))
    outputs = _static_outputs(node.returns, analysis, table)
    return Signature(tuple(inputs), outputs, table)


def _static_outputs(
    returns: ast.expr | None, analysis: Analysis, table: TypeTable
) -> tuple[OutputInfo, ...]:
    if returns is None:
        return (OutputInfo("output", "any"),)
    if isinstance(returns, ast.Constant) and returns.value is None:
        return ()
    aliases = analysis.aliases
    name = dotted(returns)
    if name is not None and name in analysis.namedtuples:
        fields = []
        for stmt in analysis.namedtuples[name].body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                fields.append(
                    OutputInfo(
                        stmt.target.id, from_annotation_node(stmt.annotation, aliases, table)
                    )
                )
        if fields:
            return tuple(fields)
    if isinstance(returns, ast.Subscript):
        base = _resolve(returns.value, aliases) or ""
        if base.rpartition(".")[2] in ("tuple", "Tuple"):
            elts = returns.slice.elts if isinstance(returns.slice, ast.Tuple) else [returns.slice]
            variadic = len(elts) == 2 and isinstance(elts[1], ast.Constant) and elts[1].value is ...
            if len(elts) >= 2 and not variadic:
                return tuple(
                    OutputInfo(f"output_{i}", from_annotation_node(e, aliases, table))
                    for i, e in enumerate(elts)
                )
    return (OutputInfo("output", from_annotation_node(returns, aliases, table)),)


def explicit_function(analysis: Analysis, entry: Mapping[str, Any], filename: str) -> FoundFunction:
    """A function task registered explicitly (Dioptra's ``function_tasks`` entry),
    checked against the code."""
    allowed = {
        "name",
        "description",
        "inputParams",
        "input_params",
        "inputs",
        "outputParams",
        "output_params",
        "outputs",
    }
    if not isinstance(entry, Mapping):
        raise TaskPluginError(f"{filename}: each function task is a mapping, not {entry!r}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise TaskPluginError(
            f"{filename}: function task {entry.get('name')!r} has unknown key(s) {unknown} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    name = entry.get("name")
    node = analysis.all_functions.get(name) if isinstance(name, str) else None
    if node is None or not isinstance(name, str):
        defined = ", ".join(sorted(analysis.all_functions)) or "none"
        raise TaskPluginError(
            f"{filename}: function task {name!r} is not a module-level function of the file "
            f"(functions defined: {defined})"
        )
    owner = f"{filename}:{node.lineno}: task {name!r}"
    inputs = _one_of(entry, ("inputParams", "input_params", "inputs"), owner)
    outputs = _one_of(entry, ("outputParams", "output_params", "outputs"), owner)
    try:
        signature = apply_registration(
            derive_static(node, analysis), owner, inputs=inputs, outputs=outputs
        )
    except TaskDefinitionError as exc:
        raise TaskPluginError(str(exc)) from None
    return FoundFunction(
        name,
        name,
        node.lineno,
        signature,
        entry.get("description") or ast.get_docstring(node),
        name in analysis.functions,
    )


def explicit_artifact(analysis: Analysis, entry: Mapping[str, Any], filename: str) -> FoundArtifact:
    if not isinstance(entry, Mapping):
        raise TaskPluginError(f"{filename}: each artifact task is a mapping, not {entry!r}")
    unknown = sorted(set(entry) - {"name", "description", "outputParams", "output_params"})
    if unknown:
        raise TaskPluginError(
            f"{filename}: artifact task {entry.get('name')!r} has unknown key(s) {unknown}"
        )
    name = entry.get("name")
    found = analysis.artifacts.get(name) if isinstance(name, str) else None
    if found is None:
        defined = ", ".join(sorted(analysis.artifacts)) or "none"
        raise TaskPluginError(
            f"{filename}: artifact task {name!r} is not a class of the file deriving from "
            f"ArtifactTask (artifact task classes defined: {defined})"
        )
    return attrs.evolve(found, description=entry.get("description") or found.description)


def _one_of(entry: Mapping[str, Any], keys: tuple[str, ...], owner: str) -> Any:
    given = [k for k in keys if k in entry]
    if len(given) > 1:
        raise TaskPluginError(f"{owner}: give one of {given}, not several")
    return entry[given[0]] if given else None
