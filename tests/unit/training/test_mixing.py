"""Mixup and cutmix (torchvision.transforms.v2) in the trainer: a cpu-scale point of CRL Table III trains CE and CRL end
to end with class-probability targets; the run id of a run without them is the one the committed records have; an
objective that takes class indices only is a one-line error before training."""
import json
from pathlib import Path

import pytest

from ratio_losses.sweeps.presets import expand_sweep
from ratio_losses.training import config_from_dict, run_id, run_training


def _cpu_point(loss: str) -> dict:
    "CRL Table III's cpu-scale point of the small CNN, seed 0, for `loss` (Fashion-MNIST, 2000 images, 3 epochs)."
    (point,) = [p for p in expand_sweep('configs/crl_table3.yaml', 'cpu') if p.config['backbone'] == 'small_cnn'
                and list(p.config['objective']) == [loss] and p.config['seed'] == 0]
    return dict(point.config)


@pytest.mark.parametrize('loss', ['ce', 'crl'])
def test_a_cpu_scale_point_trains_with_mixup_and_cutmix(loss, tmp_path, fashion_mnist_dir):
    config = {**_cpu_point(loss), 'mixup_alpha': 0.2, 'cutmix_alpha': 1.0, 'out_dir': str(tmp_path / loss),
              'progress': False, 'tensorboard': False, 'tags': {}}
    record = run_training(config)
    assert record['status'] == 'complete', record['collapse']
    assert record['config']['mixup_alpha'] == 0.2 and record['config']['cutmix_alpha'] == 1.0
    assert record['final']['test_error'] < 0.5                # it learned (10 classes: chance is 0.9)
    plain = _cpu_point(loss)
    assert record['run_id'] != run_id(plain)                    # a mixed run is another run
    committed = {json.loads(p.read_text())['run_id'] for p in Path('results/cpu/crl_table3').glob('**/record.json')}
    assert run_id(plain) in committed                           # the unmixed point keeps its committed record's id
    print(f"{loss} with mixup/cutmix: test error {record['final']['test_error']:.4f}")


def test_mixing_an_objective_of_class_indices_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^mixup_alpha/cutmix_alpha make the targets class probabilities, which "
                                         r"objective 'ce\+cc' does not take \('cc': class indices only\)"):
        config_from_dict({'dataset': 'digits', 'head': 'se_attention', 'objective': {'cc': {}}, 'mixup_alpha': 0.2})
    with pytest.raises(ValueError, match=r'^cutmix_alpha=-1 must be a number >= 0'):
        config_from_dict({'dataset': 'digits', 'cutmix_alpha': -1})
