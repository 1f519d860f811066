"""Each options enum holds exactly the values the library accepts."""

from __future__ import annotations

import ast
import sys

import pytest
import torch
from torch import nn

from landscape import options
from landscape.cli.parser import build_parser
from landscape.directions import random_direction
from landscape.hessian import hessian_eigenpairs
from landscape.linalg import dense_operator, lanczos_eigenpairs
from landscape.options import Ignore, Norm, Precision, Which, values


def _accepted(call, candidates):
    """The candidates that ``call`` takes without a ValueError."""
    taken = []
    for value in candidates:
        try:
            call(value)
        except ValueError:
            continue
        taken.append(value)
    return tuple(taken)


CANDIDATES = ("filter", "layer", "weight", "none", "biasbn", "weights", "states", "fp32",
              "tf32", "bf16", "fp16", "LA", "SA", "LM", "BE", "SM", "filters")  # fmt: skip


def test_norm_and_ignore_are_what_random_direction_takes():
    model = nn.Linear(3, 2)
    assert set(_accepted(lambda v: random_direction(model, norm=v), CANDIDATES)) == set(
        values(Norm)
    )
    assert set(_accepted(lambda v: random_direction(model, ignore=v), CANDIDATES)) == set(
        values(Ignore)
    )


def test_precision_is_what_objective_takes():
    from landscape.objective import Objective

    x = torch.randn(4, 3)
    make = lambda v: Objective(nn.Linear(3, 1), (x, x.sum(1)), loss="mse", precision=v)  # noqa: E731
    assert set(_accepted(make, CANDIDATES)) == set(values(Precision))


@pytest.mark.parametrize(
    "solve",
    [
        lambda v: lanczos_eigenpairs(
            dense_operator(torch.diag(torch.arange(1.0, 7.0))), 2, which=v
        ),
        "hessian",
    ],
)
def test_which_is_what_the_eigensolvers_take(solve):
    if solve == "hessian":
        from landscape.objective import Objective

        x = torch.randn(20, 3, dtype=torch.float64)
        objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        solve = lambda v: hessian_eigenpairs(objective, k=2, which=v, progress=False)  # noqa: E731
    assert set(_accepted(solve, CANDIDATES)) == set(values(Which))


def test_the_cli_offers_every_choice_the_library_takes():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "surface" in a.choices)
    surface, hessian = subparsers.choices["surface"], subparsers.choices["hessian"]
    offered = {
        a.dest: tuple(a.choices) for p in (surface, hessian) for a in p._actions if a.choices
    }
    assert offered["norm"] == values(Norm)
    assert offered["ignore"] == values(Ignore)
    assert offered["dir_type"] == values(options.DirType)
    assert offered["precision"] == values(Precision)
    assert offered["which"] == values(Which)  # BE included (0.2's CLI lacked it)


def test_members_are_their_values_and_have_docstrings():
    for enum in (Norm, Ignore, options.DirType, Precision, Which):
        for member in enum:
            assert member == member.value and str(member) == member.value
            assert isinstance(member, str)
    assert random_direction(nn.Linear(3, 2), norm=Norm.LAYER, seed=0).keys() == {"weight", "bias"}
    source = open(options.__file__).read()
    for enum in (Norm, Ignore, options.DirType, Precision, Which):
        for member in enum:  # each member line is followed by its docstring
            line = f'{member.name} = "{member.value}"\n    """'
            assert line in source, member


def test_options_and_checks_import_only_the_standard_library():
    from landscape import checks

    for module in (options, checks):
        tree = ast.parse(open(module.__file__).read())
        imported = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
        }
        imported |= {
            n.module.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.level == 0
        }
        assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
