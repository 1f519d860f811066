"""One voice for argument errors, and one seed rule for every seeded entry point."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.checks import check_choice, check_count, check_flag, check_seed, check_state
from landscape.directions import random_direction, random_directions
from landscape.hessian import hessian_trace
from landscape.objective import Objective
from landscape.options import Norm


def _objective():
    x = torch.randn(8, 3, dtype=torch.float64)
    return Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")


def _train(seed):
    from landscape.demo import train_classifier

    data = (torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))
    return train_classifier(nn.Linear(64, 10), data, lr=0.1, num_threads=None, batch_size=2,
                            steps=1, seed=seed, progress=False)  # fmt: skip


def _seeded_entry_points():
    from landscape.demo import digits_mlp
    from landscape.models import cifar_like, cifar_resnet
    from landscape.sharpness import keskar_subspace

    return {
        "digits_mlp": lambda seed: digits_mlp(seed=seed),
        "cifar_resnet": lambda seed: cifar_resnet(8, seed=seed),
        "cifar_like": lambda seed: cifar_like(2, seed=seed),
        "train_classifier": _train,
        "keskar_subspace": lambda seed: keskar_subspace(4, 2, seed=seed),
    }


@pytest.mark.parametrize("name", sorted(_seeded_entry_points()))
def test_demo_models_and_sharpness_seeds_go_through_check_seed(name):
    # 0.2: digits_mlp said "seed must be an int", cifar_resnet(seed=1.5) leaked torch's error
    build = _seeded_entry_points()[name]
    with pytest.raises(TypeError, match="expected an int seed, got float 1.5"):
        build(1.5)
    with pytest.raises(ValueError, match=r"expected an int seed in 0 .. 2\*\*63 - 1, got -1"):
        build(-1)


SEEDED = {
    "random_directions": lambda seed: random_directions(nn.Linear(3, 2), seed=seed),
    "random_direction": lambda seed: random_direction(nn.Linear(3, 2), seed=seed),
    "hessian_trace": lambda seed: hessian_trace(
        _objective(), num_probes=4, seed=seed, progress=False
    ),
}


@pytest.mark.parametrize("name", sorted(SEEDED))
@pytest.mark.parametrize("seed", [1.5, 1.0, True])
def test_a_seed_that_is_no_int_is_a_type_error(name, seed):
    # 0.2: random_directions(seed=1.5) ran with seed 1, hessian_trace leaked torch's error
    with pytest.raises(TypeError, match=f"expected an int seed, got {type(seed).__name__} {seed}"):
        SEEDED[name](seed)


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_a_negative_seed_is_a_value_error(name):
    with pytest.raises(ValueError, match=r"expected an int seed in 0 .. 2\*\*63 - 1, got -1"):
        SEEDED[name](-1)


def test_random_direction_seed_none_is_seed_zero_with_a_warning():
    # 0.2 took None for 0 silently here and refused it in random_directions
    model = nn.Linear(3, 2)
    with pytest.warns(DeprecationWarning, match=r"seed=None\) means seed 0 .* pass seed=0"):
        none = random_direction(model, seed=None)
    zero = random_direction(model, seed=0)
    assert all(torch.equal(none[k], zero[k]) for k in zero)
    with pytest.raises(TypeError, match="expected an int seed, got NoneType None"):
        random_directions(model, seed=None)


def test_checks_speak_in_one_voice():
    assert check_seed(2**63 - 1) == 2**63 - 1 and check_count(1, "num") == 1
    assert check_choice(Norm.WEIGHT, Norm, "norm") == "weight" and check_flag(False, "x") is False
    with pytest.raises(
        ValueError,
        match="expected one of 'filter', 'layer', 'weight', 'none' for norm, got 'filters'",
    ):
        check_choice("filters", Norm, "norm")
    with pytest.raises(
        ValueError,
        match="expected one of 'filter', 'layer', 'weight', 'none' for norm, got 'filters'",
    ):
        random_direction(nn.Linear(3, 2), norm="filters")
    with pytest.raises(
        ValueError, match="expected one of 'LA', 'SA', 'LM', 'BE' for which, got 'SM'"
    ):
        from landscape.hessian import hessian_eigenpairs

        hessian_eigenpairs(_objective(), k=1, which="SM", progress=False)
    with pytest.raises(ValueError, match="expected an int num >= 2, got 1"):
        check_count(1, "num", minimum=2)
    with pytest.raises(TypeError, match="expected an int num, got bool True"):
        check_count(True, "num")
    with pytest.raises(TypeError, match="expected True or False for flag, got int 1"):
        check_flag(1, "flag")
    with pytest.raises(
        ValueError, match=r"expected an int seed in 0 .. 2\*\*63 - 1, got 18446744073709551616"
    ):
        check_seed(2**64)


def _bn_objective():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).double().eval()
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return Objective(model, (x, torch.zeros(6, 3, dtype=torch.float64)), loss="mse")


def _state_checks():
    """Each entry point that takes a state, given one with a mis-shaped ``weight``."""
    from landscape.checkpoint import load_checkpoint
    from landscape.directions import (
        checkpoint_plane,
        directional_curvature,
        interpolation_direction,
        normalize_direction,
    )
    from landscape.hessian import HessianOperator
    from landscape.params import point_state
    from landscape.paths import reestimate_bn

    good, bad = {"weight": torch.zeros(1, 3)}, {"weight": torch.zeros(3, 1)}
    linear = nn.Linear(3, 1, bias=False)
    obj = Objective(linear.double(), (torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 1)))
    bn = _bn_objective()
    bn_bad = {**bn.base_state, "0.weight": torch.zeros(2, 3, dtype=torch.float64)}
    return {
        "load_checkpoint": lambda: load_checkpoint(nn.Linear(3, 1, bias=False), bad),
        "checkpoint_plane": lambda: checkpoint_plane(linear, [good, good, bad]),
        "normalize_direction": lambda: normalize_direction(bad, good),
        "interpolation_direction": lambda: interpolation_direction(good, bad),
        "point_state": lambda: point_state(good, [good], [1.0], ends=[bad]),
        "HessianOperator.matvec": lambda: HessianOperator(obj).matvec(bad),
        "directional_curvature": lambda: directional_curvature(obj, bad),
        "reestimate_bn": lambda: reestimate_bn(bn, bn_bad),
    }


@pytest.mark.parametrize("name", sorted(_state_checks()))
def test_every_state_check_is_check_state(name):
    # 0.2: seven partial checks with seven wordings (and none before loading in reestimate_bn)
    with pytest.raises(ValueError, match=r"^expected .* to match the names and shapes of .*, got"):
        _state_checks()[name]()


def test_check_state_lists_each_kind_of_mismatch():
    expected = {"a": torch.zeros(2), "b": torch.zeros(1, 2)}
    with pytest.raises(ValueError) as info:
        check_state({"b": torch.zeros(2, 1), "c": torch.zeros(1)}, expected, name="x", against="y")
    assert str(info.value) == (
        "expected x to match the names and shapes of y, got missing keys (1): a; "
        "unexpected keys (1): c; mis-shaped keys (1): b: expected (1, 2), got (2, 1)"
    )
    check_state({"a": torch.ones(2)}, expected, missing=False)  # a part of a state: fine
    check_state({"a": torch.ones(2), "c": torch.ones(1)}, {"a": torch.ones(2)}, unexpected=False)
