"""The layering rule of CONTRIBUTING.md, read from the source text: every `import` and `from ... import`
of every module (at the top or inside a function) points to an earlier package of the chain or to its
own package. Read statically because importing any submodule runs the package root, which imports
every layer, so an upward import cannot be seen at run time."""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_retina"
# The chain of CONTRIBUTING.md, earliest first; packages in one tuple sit side by side and do not import
# each other.
CHAIN = (("errors", "version", "renamed"), ("config_fields", "files"), ("ops",), ("modeling",), ("data",),
         ("model_dir",), ("evaluation",), ("pretrained",), ("training", "deploy"), ("inference",), ("batch",), ("cli",))


def _place(module):
    """A dotted module name -> (rank in CHAIN, top package), or None outside keras_retina and for the root."""
    parts = module.split(".")
    if parts[0] != "keras_retina" or len(parts) == 1:
        return None
    for rank, names in enumerate(CHAIN):
        if parts[1] in names:
            return rank, parts[1]
    raise AssertionError(f"{module}: keras_retina.{parts[1]} is in no layer of the chain; add it to CHAIN and "
                         f"CONTRIBUTING.md")


def _imports(path):
    """(line, imported module name) for each import in a file; `from keras_retina import x` gives the root."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from keras_retina import errors` imports the module keras_retina.errors
            modules = [f"{node.module}.{alias.name}" for alias in node.names
                       if (PACKAGE.parent / node.module.replace(".", "/") / f"{alias.name}.py").exists()
                       or (PACKAGE.parent / node.module.replace(".", "/") / alias.name / "__init__.py").exists()]
            yield from ((node.lineno, module) for module in (modules or [node.module]))


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_import_points_down_the_chain():
    wrong = []
    for path, module in _modules():
        own = _place(module)
        if own is None:  # the package root assembles the public API from every layer
            continue
        for line, target in _imports(path):
            if target == "keras_retina":
                wrong.append(f"{path.name}:{line}: {module} imports the package root, which imports every layer")
                continue
            other = _place(target)
            if other is None:
                continue
            if other[0] > own[0] or (other[0] == own[0] and other[1] != own[1]):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}, "
                             f"which sits {'above' if other[0] > own[0] else 'beside'} it")
    assert not wrong, "\n".join(wrong)


def test_the_chain_is_the_one_contributing_states():
    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text()
    stated = re.search(r"```\n(errors.*?)```", text, re.S).group(1)
    layers = [[name.strip() for name in layer.split(",")] for layer in re.split(r"\s*->\s*", stated.strip())]
    assert [tuple(layer) for layer in layers] == list(CHAIN)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The reading itself: an import inside a function and a `from keras_retina import` are both seen."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from keras_retina.cli import main\n    from keras_retina import __version__\n"
                    "from keras_retina import errors\n")
    assert sorted(target for _, target in _imports(path)) == ["keras_retina", "keras_retina.cli.main",
                                                                "keras_retina.errors"]
    assert _place("keras_retina.cli.main")[0] > _place("keras_retina.ops.boxes")[0]
