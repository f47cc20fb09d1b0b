"""Spaces sized from a budget: the smallest network fits and >= 20 % of samples are feasible;
tools/search.py sizes the space from --device when no space flag is given."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_cnas.cli.sized import sized_space
from keras_cnas.costs import Constraints, Pricer, estimate
from keras_cnas.costs.sizing import (REFERENCE_DEPTH, blockset_space_for_budget,
                                     descriptor_space_for_budget, feasible_share)
from keras_cnas.devices import get_device
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, reference

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR = (32, 32, 3)
#: ResNet-8's own budget (MLPerf Tiny's image-classification reference size).
RESNET8 = Constraints(max_params=80_000, max_madds=12_501_632)


@pytest.mark.parametrize("budget", [get_device("stm32l4r5").constraints(), RESNET8],
                         ids=["stm32l4r5", "resnet8"])
@pytest.mark.parametrize("sizer", [descriptor_space_for_budget, blockset_space_for_budget],
                         ids=["descriptor", "blockset"])
def test_the_sized_space_has_a_feasible_share_of_at_least_20_percent(sizer, budget):
    sized = sizer(budget, CIFAR, 10)
    assert sized.share >= 0.2
    pricer = Pricer(budget)
    # Other samples than the ones sizing priced: the share holds up.
    assert feasible_share(sized.space, pricer, samples=100, seed=7) >= 0.2
    if isinstance(sized.space, BlockSetSpace):
        assert pricer.check(sized.space._empty)  # the smallest network fits


def test_the_default_spaces_do_not_fit_a_resnet8_budget_and_the_sized_ones_do():
    empty = BlockSetSpace(CIFAR, 10)._empty
    assert estimate(empty).params == 507_786 > RESNET8.bounds["params"]
    assert feasible_share(DescriptorSpace(CIFAR, 10), Pricer(RESNET8), 200) < 0.1
    assert BlockSetSpace.for_budget(RESNET8, CIFAR, 10).skeleton.stem_filters < 32
    assert DescriptorSpace.for_budget(RESNET8, CIFAR, 10).max_skip_span == 2
    # ResNet-8 meets its own budget, and the sized space holds it: the sizer ranks spaces
    # as deep as the field's references (REFERENCE_DEPTH conv layers) first.
    resnet8 = reference.resnet_cifar_descriptor(8)
    assert Pricer(RESNET8).check(resnet8)
    assert DescriptorSpace.for_budget(RESNET8, CIFAR, 10).contains(resnet8)


def test_a_deep_space_wins_over_a_wider_shallow_one_and_shallow_ones_remain_a_fallback():
    deep = descriptor_space_for_budget(RESNET8, CIFAR, 10)
    assert deep.space.max_conv_layers >= REFERENCE_DEPTH and deep.share >= 0.3
    # A budget no deep space meets at 30 % of samples: a shallower space still gets sized.
    shallow = descriptor_space_for_budget(Constraints(max_params=300), CIFAR, 10)
    assert shallow.space.max_conv_layers < REFERENCE_DEPTH and shallow.share >= 0.3


def test_an_impossible_budget_says_so():
    with pytest.raises(InfeasibleConstraintsError, match=r"even a one-layer, one-filter descriptor "
                                                         r"breaks them \(params [\d,]+ vs max_params=10\)"):
        descriptor_space_for_budget(Constraints(max_params=10), CIFAR, 10)
    with pytest.raises(InfeasibleConstraintsError, match="even the narrowest block-set skeleton"):
        blockset_space_for_budget(Constraints(max_params=100), CIFAR, 10)


def test_space_flags_win_and_no_budget_means_no_sizing():
    budget = RESNET8
    assert sized_space("descriptor", CIFAR, 10, budget, (), None) is not None
    assert sized_space("descriptor", CIFAR, 10, budget, ("max_filters",), None) is None
    assert sized_space("blockset", CIFAR, 10, budget, ("width_multiplier",), None) is None
    assert sized_space("blockset", CIFAR, 10, Constraints(), (), None) is None
    assert sized_space("enas_cell", CIFAR, 10, budget, (), None) is None


@pytest.mark.slow  # CIFAR-10 from the JPEG tarball, two trials converted and measured each
@pytest.mark.parametrize("space", ["descriptor", "blockset"])
def test_search_tool_on_cifar10_with_a_device_sizes_the_space(space, shared_data, tmp_path):
    out = subprocess.run(
        [sys.executable, "tools/search.py", "--dataset=cifar10",
         f"--data_dir={shared_data / 'cifar10-jpeg'}", "--device=stm32l4r5", f"--space={space}",
         "--strategy=random", "--max_trials=2", "--traction_epochs=1", "--full_epochs=1",
         "--max_train_examples=200", "--batch_size=64", "--nofinalize",
         f"--search_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "space sized for the budget" in out.stdout
    sizing = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["space_sizing"]
    assert sizing["space"] == space and sizing["feasible_share"] >= 0.2


def test_residual_flags_win_over_the_sizers_own_settings_and_sizing_goes_on():
    plain = {"max_stride": 1, "max_skip_span": 0, "global_pool": False}
    sized = sized_space("descriptor", CIFAR, 10, RESNET8, ("max_skip_span",), None, plain)
    assert sized is not None  # shape flags do not turn sizing off; bound flags do
    space = sized.space
    assert (space.max_stride, space.max_skip_span, space.global_pool) == (1, 0, False)
    rng = np.random.default_rng(3)
    for spec in (space.sample(rng) for _ in range(30)):
        assert not spec.skips and not spec.global_pool
        assert all(layer.stride == 1 for layer in spec.conv_layers)
    # Only a given flag overrides: the others keep the residual defaults.
    partial = sized_space("descriptor", CIFAR, 10, RESNET8, (), None, {"max_skip_span": 1}).space
    assert (partial.max_stride, partial.max_skip_span, partial.global_pool) == (2, 1, True)
    assert sized_space("descriptor", CIFAR, 10, RESNET8, ("max_filters", "max_stride"), None,
                       {"max_stride": 1}) is None
    with pytest.raises(Exception, match="max_stride"):
        descriptor_space_for_budget(RESNET8, CIFAR, 10, max_stride=0)


def test_search_tool_takes_the_residual_flags_with_and_without_a_budget(tmp_path):
    common = [sys.executable, "tools/search.py", "--dataset=digits", "--space=descriptor",
              "--strategy=random", "--max_trials=1", "--traction_epochs=1", "--full_epochs=1",
              "--batch_size=64", "--nofinalize"]
    cases = {"sized": (["--max_params=5000", "--max_skip_span=0", "--noglobal_pool"],
                       {"max_stride": 2, "max_skip_span": None, "global_pool": None}),
             "flags": (["--max_conv_layers=3", "--max_stride=2", "--max_skip_span=2",
                        "--global_pool"], {"max_stride": 2, "max_skip_span": 2,
                                           "global_pool": True})}
    for name, (flags, expected) in cases.items():
        out = subprocess.run([*common, *flags, f"--search_dir={tmp_path / name}"], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert ("space sized for the budget" in out.stdout) == (name == "sized")
        config = json.loads((tmp_path / name / "summary.json").read_text())["config"]
        space = config["space"]["config"] if "config" in config["space"] else config["space"]
        # get_config leaves the paper's values (stride 1, no skips, flatten) out.
        assert {k: space.get(k) for k in expected} == expected, space
