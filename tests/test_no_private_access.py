"""Backends reach core only through its public hooks — never an underscore name of core.

Why a test: a backend that calls or overrides a private member of core ties core's insides to
that backend (issue 10: EMR called ``self._connection()``/``self._cancel()`` and overrode
``_trigger_kwargs``), so core cannot change without breaking it, and a new backend copies the
habit. The scan reads the source with :mod:`ast` (not regexes, not imports: a module mid-edit or
one whose optional dependency is missing is still read) and reports, for every module outside
``airflow_spark_async/core/``:

* a method or attribute that overrides or assigns an underscore member of a core ancestor class;
* ``self._x``, ``cls._x`` or ``super()._x`` where ``_x`` is such a member;
* ``from airflow_spark_async.core… import _x`` and ``core_module._x`` / ``CoreClass._x``;
* ``anything._x`` where ``_x`` is an underscore member of some core class and no module outside
  core defines that name itself.

Dunder names are not private; a backend's own underscore names are its business.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import airflow_spark_async

PACKAGE_ROOT = Path(airflow_spark_async.__file__).parent
PACKAGE = "airflow_spark_async"
CORE = "airflow_spark_async.core"


@dataclasses.dataclass(frozen=True, order=True)
class Violation:
    module: str
    line: int
    name: str
    how: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.how} {self.name}"


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def is_core(module: str, core: str = CORE) -> bool:
    return module == core or module.startswith(core + ".")


def package_modules(root: Path = PACKAGE_ROOT, package: str = PACKAGE) -> dict[str, ast.Module]:
    """Every module of the package, by dotted name, parsed."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
        modules[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return modules


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else ``None``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _imports(module: str, tree: ast.Module, is_package: bool) -> dict[str, str]:
    """Local name → what it names (``pkg.mod`` or ``pkg.mod.Name``), for every import in the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                names[alias.asname or top] = alias.name if alias.asname else top
    return names


def _resolve(expr: ast.expr, module: str, imports: Mapping[str, str], local: set[str]) -> str | None:
    dotted = _dotted(expr)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    if head in local and not rest:
        return f"{module}.{head}"
    if head in imports:
        return imports[head] + (f".{rest}" if rest else "")
    return None


def _self_attributes(cls: ast.ClassDef) -> Iterator[ast.Attribute]:
    """``self.x``, ``cls.x`` and ``super().x`` anywhere in the class body (nested lambdas included)."""
    for node in ast.walk(cls):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            yield node
        elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            yield node


def _defined_members(cls: ast.ClassDef) -> dict[str, int]:
    """Names a class defines: its methods and class attributes, and ``self.x = …`` in its methods."""
    members: dict[str, int] = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members.setdefault(node.name, node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        members.setdefault(name.id, node.lineno)
    for attr in _self_attributes(cls):
        if isinstance(attr.ctx, ast.Store) and isinstance(attr.value, ast.Name):
            members.setdefault(attr.attr, attr.lineno)
    return members


@dataclasses.dataclass
class _Index:
    """What every module defines, and which classes derive from which."""

    modules: Mapping[str, ast.Module]
    core: str
    imports: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = dataclasses.field(default_factory=dict)
    class_module: dict[str, str] = dataclasses.field(default_factory=dict)
    bases: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    module_names: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for module, tree in self.modules.items():
            self.imports[module] = _imports(module, tree, _is_package(module, self.modules))
            local: set[str] = set()
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    local.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                        local.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            self.module_names[module] = local
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    qualified = f"{module}.{node.name}"
                    self.classes[qualified] = node
                    self.class_module[qualified] = module
        for qualified, cls in self.classes.items():
            module = self.class_module[qualified]
            resolved = (_resolve(base, module, self.imports[module], self.module_names[module]) for base in cls.bases)
            self.bases[qualified] = [b for b in resolved if b in self.classes]

    def ancestors(self, qualified: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.bases.get(qualified, ()))
        while todo:
            base = todo.pop()
            if base not in seen:
                seen.add(base)
                todo.extend(self.bases.get(base, ()))
        return seen

    def core_privates_of_class(self, qualified: str) -> set[str]:
        """Underscore members core defines on this class and its core ancestors."""
        names: set[str] = set()
        for cls in {qualified, *self.ancestors(qualified)}:
            if is_core(self.class_module[cls], self.core):
                names.update(n for n in _defined_members(self.classes[cls]) if is_private(n))
        return names

    def inherited_core_privates(self, qualified: str) -> set[str]:
        """Underscore members a class outside core inherits from core."""
        names: set[str] = set()
        for cls in self.ancestors(qualified):
            if is_core(self.class_module[cls], self.core):
                names |= self.core_privates_of_class(cls)
        return names

    def all_core_class_privates(self) -> set[str]:
        return {n for q in self.classes if is_core(self.class_module[q], self.core)
                for n in self.core_privates_of_class(q)}

    def names_defined_outside_core(self) -> set[str]:
        names: set[str] = set()
        for module, local in self.module_names.items():
            if not is_core(module, self.core):
                names |= local
        for qualified, cls in self.classes.items():
            if not is_core(self.class_module[qualified], self.core):
                names |= set(_defined_members(cls))
        return names


def _is_package(module: str, modules: Mapping[str, ast.Module]) -> bool:
    return any(other.startswith(module + ".") for other in modules)


def private_access(modules: Mapping[str, ast.Module], core: str = CORE) -> list[Violation]:
    """Every place a module outside ``core`` calls, reads or overrides an underscore name of core."""
    index = _Index(modules, core)
    any_core_private = index.all_core_class_privates()
    own_names = index.names_defined_outside_core()
    found: set[Violation] = set()
    for module, tree in modules.items():
        if is_core(module, core):
            continue
        imports = index.imports[module]
        # imports of core's private names
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    target = imports.get(alias.asname or alias.name, "")
                    if is_private(alias.name) and is_core(target.rpartition(".")[0], core):
                        found.add(Violation(module, node.lineno, alias.name, "imports"))
        # classes deriving from core: overrides and self/cls/super() access
        on_self: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            inherited = index.inherited_core_privates(f"{module}.{node.name}")
            for name, line in _defined_members(node).items():
                if name in inherited:
                    found.add(Violation(module, line, name, "overrides"))
            for attr in _self_attributes(node):
                on_self.add(id(attr))
                if attr.attr in inherited and not isinstance(attr.ctx, ast.Store):
                    found.add(Violation(module, attr.lineno, attr.attr, "uses"))
        # anything else: core modules and classes by name, and core's private member names
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not is_private(node.attr) or id(node) in on_self:
                continue
            target = _resolve(node.value, module, imports, index.module_names[module])
            if target is not None and is_core(target, core):
                is_class = target in index.classes
                if not is_class or node.attr in index.core_privates_of_class(target):
                    found.add(Violation(module, node.lineno, node.attr, "uses"))
            elif node.attr in any_core_private and node.attr not in own_names:
                found.add(Violation(module, node.lineno, node.attr, "uses"))
    return sorted(found)


def test_no_module_outside_core_reaches_into_a_private_name_of_core() -> None:
    violations = private_access(package_modules())
    assert not violations, "use core's public hooks instead:\n" + "\n".join(map(str, violations))


SYNTHETIC_CORE = '''
def _helper(): ...

class SparkJobOperator:
    def _connection(self): ...
    def _cancel(self, job_id): ...
    def cancel_job(self, job_id): ...

class SparkJobSensor:
    def __init__(self):
        self._state = None
    def _trigger_kwargs(self): ...
'''

SYNTHETIC_BACKEND = '''
from pkg.core import operator as core_operator
from pkg.core.operator import SparkJobOperator, _helper
from pkg.core.sensor import SparkJobSensor

class Base(SparkJobOperator):
    pass

class StepsOperator(Base):
    def execute(self, context):
        self._connection()
        self._own = 1
        return self.cancel_job("j") and self._own

    def execute_complete(self, context, event):
        self.backend_call(lambda backend: self._cancel(event.job_id))

class StepSensor(SparkJobSensor):
    def _trigger_kwargs(self):
        return super()._trigger_kwargs()

    def _job_id(self):
        return "mine"

def elsewhere(sensor):
    core_operator._helper()
    return sensor._state, sensor._job_id()
'''


def test_the_scan_finds_calls_overrides_imports_and_reads_of_core_private_names() -> None:
    """The scan is not vacuous: EMR's three uses of issue 10, and the other kinds, are found."""
    modules = {
        "pkg.core": ast.parse(""),
        "pkg.core.operator": ast.parse(SYNTHETIC_CORE),
        "pkg.core.sensor": ast.parse(SYNTHETIC_CORE),
        "pkg.emr": ast.parse(""),
        "pkg.emr.base": ast.parse(SYNTHETIC_BACKEND),
    }
    found = {(v.name, v.how) for v in private_access(modules, core="pkg.core")}
    assert found == {
        ("_connection", "uses"),  # self._connection()
        ("_cancel", "uses"),  # self._cancel(), in a lambda
        ("_trigger_kwargs", "overrides"),
        ("_trigger_kwargs", "uses"),  # super()._trigger_kwargs()
        ("_helper", "imports"),
        ("_helper", "uses"),  # core_operator._helper()
        ("_state", "uses"),  # a core class's private attribute on any object
    }, found


def test_the_scan_reads_every_module_of_the_package() -> None:
    modules = package_modules()
    assert {"airflow_spark_async.core.operator", "airflow_spark_async.emr.sensors",
            "airflow_spark_async.livy.operators", "airflow_spark_async.databricks.operators",
            "airflow_spark_async.standalone.operators"} <= set(modules)
    index = _Index(modules, CORE)
    assert "_known_jobs" in index.core_privates_of_class("airflow_spark_async.core.operator.SparkJobOperator")
