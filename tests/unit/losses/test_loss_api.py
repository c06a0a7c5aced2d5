"""One calling convention for every loss: `loss(input, target, *extras)` for the module and its functional twin alike.
The test walks the registry (`LOSSES`, `FUNCTIONS`), so a loss added later is held to it too."""
import inspect

import pytest
import torch

from ratio_losses.core import ModelOutput
from ratio_losses.losses.objective import FUNCTIONS, LOSSES, forward_arguments

B, C, D = 6, 4, 5


def _arguments(seed: int = 0) -> dict:
    "One value per argument name a loss may take, for a batch of B samples and C classes."
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, D, generator=g, dtype=torch.float64)
    weight = torch.randn(C, D, generator=g, dtype=torch.float64)
    return {'logits': features @ weight.T, 'target': torch.tensor([0, 1, 2, 3, 0, 1]),
            'exit_logits': [torch.randn(B, C, generator=g, dtype=torch.float64), features @ weight.T],
            'features': features, 'weight': weight, 'means': weight,
            'attention': torch.rand(B, 8, generator=g, dtype=torch.float64),
            'feature_maps': torch.randn(B, 3 * C, 2, 2, generator=g, dtype=torch.float64)}


MODULE_OPTIONS = {'maxent': {'gamma': 0.1}}
FUNCTION_OPTIONS = {                     # the hyperparameters and state the module holds, given to the function
    'maxent': lambda m: {'gamma': 0.1},
    'lsoftmax': lambda m: {'lam': m.lam}, 'asoftmax': lambda m: {'lam': m.lam},
    'center': lambda m: {'centers': torch.zeros(C, D, dtype=torch.float64)},
}


def test_the_registry_pairs_every_module_with_its_function():
    assert list(LOSSES) == list(FUNCTIONS)


@pytest.mark.parametrize('name', list(LOSSES))
def test_module_and_function_take_the_same_arguments_in_the_same_order(name):
    args = forward_arguments(name)
    params = list(inspect.signature(FUNCTIONS[name]).parameters)
    assert params[:len(args)] == args, (name, args, params)
    assert args[1] == 'target', f"{name}: target must come second, after the input"
    assert args[0] in ('logits', 'exit_logits', 'features'), f"{name}: the input comes first"


@pytest.mark.parametrize('name', list(LOSSES))
def test_module_and_function_give_the_same_value(name):
    values = _arguments()
    module = LOSSES[name](**MODULE_OPTIONS.get(name, {})).eval()            # eval: no state moves, no random mask
    args = [values[a] for a in forward_arguments(name)]
    expected = FUNCTIONS[name](*args, **FUNCTION_OPTIONS.get(name, lambda m: {})(module))
    torch.testing.assert_close(module(*args), expected)


@pytest.mark.parametrize('name', list(LOSSES))
def test_every_term_reads_a_model_output(name):
    values = _arguments()
    out = ModelOutput(logits=values['logits'], features=values['features'], attention=values['attention'],
                      feature_maps=values['feature_maps'], class_vectors=values['weight'])
    module = LOSSES[name](**MODULE_OPTIONS.get(name, {})).eval()
    value = module.from_output(out, values['target'])
    assert value.ndim == 0 and torch.isfinite(value)


@pytest.mark.parametrize('name', [n for n in LOSSES if len(forward_arguments(n)) > 2])
def test_the_old_order_of_the_arguments_is_an_error_that_names_the_order(name):
    "Each loss with extras once took them before the target (CC-Loss, L-/A-Softmax, LGM) or as its input (MC-Loss)."
    values = _arguments()
    first, target, *extras = [values[a] for a in forward_arguments(name)]
    module = LOSSES[name](**MODULE_OPTIONS.get(name, {})).eval()
    with pytest.raises(ValueError, match=r'\(input, target, \*extras\)|come first'):
        if name == 'mc':
            FUNCTIONS[name](extras[0], target, C)                          # mutual_channel_loss(feature_maps, target, C)
        else:
            module(first, *extras, target)
    with pytest.raises(ValueError, match=r'\(input, target, \*extras\)'):
        FUNCTIONS[name](first, *extras, target, **({'centers': values['weight']} if name == 'center' else {}))
