"""The import graph of the library: no module imports itself back through others.

Read from the source (every ``import`` statement, function-level ones too), so a lazy
import that closes a cycle is caught as well."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ripik_clf"


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """``{module: modules of ripik_clf it imports}``. ``from ripik_clf import workdir``
    imports ``ripik_clf.workdir``, not the package's ``__init__``."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ripik_clf"):
                subs = [f"{node.module}.{a.name}" for a in node.names]
                found = [s for s in subs if s in modules]
                targets |= set(found) if found else {node.module}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("ripik_clf")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_its_absence():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    assert "ripik_clf.workdir" in graph["ripik_clf.predict.ensemble"]  # the reader works
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_low_layers_import_no_stage_package():
    """Infrastructure, config and the data layer never import training, prediction,
    reports or the CLI (imports point down docs/ARCHITECTURE.md's list)."""
    graph = import_graph()
    high = ("ripik_clf.cli", "ripik_clf.stages", "ripik_clf.train", "ripik_clf.predict",
            "ripik_clf.report", "ripik_clf.audit", "ripik_clf.augment")  # fmt: skip
    low = [m for m in graph if m.split(".")[1:2] in (["atomic"], ["locks"], ["errors"],
           ["progress"], ["config"], ["workdir"], ["data"], ["models"])]  # fmt: skip
    upward = {m: sorted(t for t in graph[m] if t.startswith(high)) for m in low}
    assert not {m: t for m, t in upward.items() if t}


# The modules that parse or serialise files themselves, and why; every record handed
# between stages is read and written by ripik_clf/workdir.py (issue: one reader per record).
OWN_FORMATS = {
    "ripik_clf.workdir": "the records",
    "ripik_clf.atomic": "the atomic writer every record goes through",
    "ripik_clf.data.dataset": "the user's dataset CSV (input, not a record)",
    "ripik_clf.data.curation": "the user's exclude / relabel files (input)",
    "ripik_clf.data.demo": "writes the demo data's answer key (data, not a record)",
    "ripik_clf.locks": "a lock file names its holder",
    "ripik_clf.train.distribute": "TF_CONFIG, from the environment",
    "ripik_clf.train.callbacks": "Keras' BackupAndRestore metadata, in Keras' own layout",
    "ripik_clf.train.features": "the feature cache's entries (derived, content-keyed)",
    "ripik_clf.predict.cache": "the prediction cache's entries (derived, content-keyed)",
    "ripik_clf.cli.main": "prints --json to stdout",
}
SERIALISERS = {("json", "load"), ("json", "loads"), ("json", "dump"), ("json", "dumps"),
               ("pd", "read_csv"), ("np", "load"), ("np", "save"), ("np", "savez")}  # fmt: skip


def test_records_are_read_and_written_only_by_workdir():
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    found = {}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if (owner, node.attr) in SERIALISERS or node.attr == "to_csv":
                found.setdefault(name, set()).add(f"{owner}.{node.attr}")
    assert {m: sorted(calls) for m, calls in found.items() if m not in OWN_FORMATS} == {}
    assert set(OWN_FORMATS) <= set(modules)  # no stale entry


# Who walks the dataset (load_dataset): the stages that make the split, the audit, whose
# subject is the data, and the one-time upgrade of a split made by an older version.
# Every other stage reads the split's record of the images (data/splits.recorded_split);
# tests/test_split_record.py runs them with it forbidden.
WALKERS = {
    "ripik_clf.data.dataset": "defines it",
    "ripik_clf.stages": "run_augment makes the split",
    "ripik_clf.train.common": "model_data, for the head and probe phases, makes the split",
    "ripik_clf.audit.runner": "audits the data itself",
    "ripik_clf.data.splits": "gives a split of an older version its image paths, once",
}


def test_only_the_split_making_stages_walk_the_data():
    users = {
        module_name(path)
        for path in ROOT.rglob("*.py")
        if "load_dataset"
        in {
            n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)
        }  # fmt: skip
    }
    assert users <= set(WALKERS) - {"ripik_clf.data.dataset"}


POSIX_ONLY = {"fcntl", "resource", "termios", "pwd", "grp"}


def test_no_module_imports_a_posix_only_module():
    """The package imports on Windows too: file locks come from filelock, not fcntl."""
    found = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found += [(path.name, n) for n in names if n.split(".")[0] in POSIX_ONLY]
    assert found == []
