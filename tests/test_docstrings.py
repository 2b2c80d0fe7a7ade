"""The public API's docstrings: every public name has a numpydoc docstring with the sections its
kind needs (Parameters when it takes arguments, Returns for functions, Examples), the Examples run
and print what they say, and the type hints of the public signatures resolve.

The names: fastcells.__all__, fastcells.nn.rnn_cell.__all__, the runners of fastcells.nn,
fastcells.convert.__all__ and the model classes the converters return. Examples that need a peer
framework (torch, onnx) are skipped, with the reason, when it is not installed.
"""
import doctest
import importlib.util
import inspect
import re
import sys
import typing

import numpy.typing
import pytest

import fastcells
import fastcells.convert
import fastcells.nn
import fastcells.nn.rnn_cell

# public names documented elsewhere, with the reason they are not checked here
NOT_HERE = {
    "nn": "a module (its docstring is the namespace's overview)",
    "get_num_threads": "defined in the compiled module fastcells._core (a one-line docstring)",
    "set_num_threads": "defined in the compiled module fastcells._core (a one-line docstring)",
    "LSTMStateTuple": "a namedtuple defined with the nesting helpers (fastcells._nest)",
}

MODEL_CLASSES = ("TorchRNNModel", "TorchCellModel", "OnnxRNNModel", "KerasRNN",
                 "KerasBidirectional")


def _public():
    """[(qualified name, object)] of every public name checked, each once."""
    names = [(f"fastcells.{n}", getattr(fastcells, n)) for n in fastcells.__all__]
    names += [(f"fastcells.nn.rnn_cell.{n}", getattr(fastcells.nn.rnn_cell, n))
              for n in fastcells.nn.rnn_cell.__all__]
    names += [(f"fastcells.nn.{n}", getattr(fastcells.nn, n))
              for n in ("dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn")]
    names += [(f"fastcells.convert.{n}", getattr(fastcells.convert, n))
              for n in list(fastcells.convert.__all__) + list(MODEL_CLASSES)]
    seen, out = set(), []
    for qualname, obj in names:
        if qualname.rsplit(".", 1)[1] in NOT_HERE or id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append((qualname, obj))
    return out


PUBLIC = _public()
IDS = [q for q, _ in PUBLIC]


def _signature_target(obj):
    """The function whose parameters the docstring's Parameters section describes."""
    return obj.__init__ if inspect.isclass(obj) else inspect.unwrap(obj)


def _parameters(obj):
    """The parameter names of `obj` (a class: its __init__), without self."""
    params = inspect.signature(_signature_target(obj)).parameters
    return [name for name in params if name != "self"]


def _has_section(doc, title):
    """True if the numpydoc section `title` (a title line over a line of dashes) is in `doc`."""
    return re.search(rf"^\s*{title}\n\s*-{{{len(title)}}}\s*$", doc, re.M) is not None


def test_every_public_name_is_checked():
    checked = {q.rsplit(".", 1)[1] for q in IDS}
    expected = (set(fastcells.__all__) | set(fastcells.nn.rnn_cell.__all__)
                | set(fastcells.convert.__all__) | set(MODEL_CLASSES)
                | {"dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn"}) - set(NOT_HERE)
    assert checked == expected, f"missing {expected - checked}, extra {checked - expected}"


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=IDS)
def test_numpydoc_sections(qualname, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{qualname}: no docstring"
    summary = doc.splitlines()[0]
    assert summary.strip() and len(summary) <= 100, f"{qualname}: summary line {summary!r}"
    wanted = ["Examples"]
    if _parameters(obj):
        wanted.append("Parameters")
    if not inspect.isclass(obj):
        wanted.append("Returns")
    missing = [title for title in wanted if not _has_section(doc, title)]
    assert not missing, f"{qualname}: no {missing} section(s) in its docstring"


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=IDS)
def test_documented_parameters_exist(qualname, obj):
    """Every name a Parameters section lists is a parameter of the signature."""
    doc = inspect.getdoc(obj)
    match = re.search(r"^Parameters\n-+\n(.*?)(?:^\w[\w ]*\n-+\n|\Z)", doc, re.M | re.S)
    if match is None:
        return
    listed = [name.strip().lstrip("*") for line in match.group(1).splitlines()
              if line and not line[0].isspace()
              for name in line.split(" : ")[0].split(",")]
    params = set(_parameters(obj))
    unknown = [name for name in listed if name not in params]
    assert not unknown, f"{qualname}: documents {unknown}, not in its signature {sorted(params)}"


def _examples(obj, qualname):
    tests = doctest.DocTestFinder(recurse=False).find(obj, qualname, globs={})
    return [t for t in tests if t.examples]


# the optional peers an Example may import (skipped, with the reason, when absent)
PEERS = ("torch", "onnx")


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=IDS)
def test_examples_run(qualname, obj):
    tests = _examples(obj, qualname)
    assert tests, f"{qualname}: its Examples section has no doctest examples"
    source = "".join(e.source for t in tests for e in t.examples)
    for peer in PEERS:
        # `import torch`, `from torch import nn`, `import numpy as np, torch`
        if re.search(rf"^\s*(?:from\s+{peer}\b|import\s+(?:[\w.]+(?:\s+as\s+\w+)?\s*,\s*)*"
                     rf"{peer}\b)", source, re.M) and \
                importlib.util.find_spec(peer) is None:
            pytest.skip(f"{qualname}: its Example needs {peer}, which is not installed")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test, out=sys.stdout.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{qualname}: {result.failed} of {result.attempted} examples failed"
    assert result.attempted >= 2, f"{qualname}: fewer than 2 examples ran"


# the names the annotations use (imported under TYPE_CHECKING in the modules, so they cost
# nothing at run time)
_TYPING_NAMES = {"ArrayLike": numpy.typing.ArrayLike, "DTypeLike": numpy.typing.DTypeLike,
                 "InitializerArg": typing.Union[float, typing.Callable[..., typing.Any], None],
                 **{n: getattr(typing, n) for n in typing.__all__}}


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=IDS)
def test_signatures_are_annotated(qualname, obj):
    target = _signature_target(obj)
    # the defining module's globals (__module__ names the public package, not the file)
    namespace = dict(_TYPING_NAMES, **target.__globals__)
    hints = typing.get_type_hints(target, globalns=namespace)    # resolves every annotation
    unannotated = [p for p in _parameters(obj) if p not in hints]
    assert not unannotated, f"{qualname}: parameters without a type hint: {unannotated}"
    if not inspect.isclass(obj):
        assert "return" in hints, f"{qualname}: no return annotation"
