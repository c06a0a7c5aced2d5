"""Train the small CNN without its batch norms on the digits for a few steps, in one process or under torchrun, and
save what rank 0 ends with, for each case of CASES: `python tests/ddp_train.py OUT.pt` (or under torchrun).

`tests/integration/test_distributed.py` runs it both ways and compares: with no batch statistics in the model, N processes that
share every global batch (TensorLoader's strided shares, `global_batch`, DDP's averaged gradients) must take the
steps of one process, batch-level objectives (CC-Loss, MSL, center loss) included."""
import sys

import torch
import torch.nn as nn

from ratio_losses.core import seed_everything
from ratio_losses.data import TensorLoader, dataset_info, load_tensors
from ratio_losses.losses import build_objective
from ratio_losses.models import build_model
from ratio_losses.training import batch_mixer, distributed_context, global_batch, train_one_epoch


def without_batch_norm(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm): setattr(model, name, nn.Identity())
        else: without_batch_norm(child)
    return model


CASES = {'ce': ({'ce': {}}, 'linear', {}),
         'crl': ({'crl': {'alpha': 1.5, 'beta': 1}}, 'linear', {}),
         'cc': ({'cc': {'lam': 1.0}}, 'se_attention', {}),
         'msl': ({'msl': {'xi': 0.001}}, 'multi_exit', {'exits': [1, 2, 3]}),
         'center': ({'center': {'lam': 0.003, 'alpha': 0.5}}, 'linear', {}),
         'crl mixed': ({'crl': {'alpha': 1.5, 'beta': 1}}, 'linear', {}, (0.4, 1.0))}   # mixup or cutmix per batch


def train(objective: dict, head: str, head_options: dict, mixing=(0.0, 0.0), *, rank: int, world: int, device) -> dict:
    info, tr = dataset_info('digits'), load_tensors('digits', 'train')
    loader = TensorLoader(tr.images, tr.labels, 64, seed=0, drop_last=True, hflip=True, crop_padding=1,
                          mean=info.mean, std=info.std, rank=rank, world_size=world, dtype=torch.float64)
    seed_everything(0)
    model = without_batch_norm(build_model('small_cnn', head, in_channels=1, num_classes=10, head_options=head_options)).double()
    obj = build_objective(objective).double()     # float64: the reordered sums differ by ~1e-16, not ~1e-7
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mix = batch_mixer(*mixing, num_classes=10)
    epochs = [train_one_epoch(net, obj, opt, loader, device, max_steps=6, progress=False, mix=mix) for _ in range(2)]
    # the objective on one fixed global batch, from the model as trained (the value every process computes)
    x, y = next(iter(TensorLoader(tr.images, tr.labels, 64, shuffle=False, mean=info.mean, std=info.std,
                                  rank=rank, world_size=world, dtype=torch.float64)))
    model.eval(); obj.train()
    with torch.no_grad(): value = obj(*global_batch(model(x), y)).item()
    return {'state': model.state_dict(), 'epochs': epochs, 'value': value, 'objective_state': obj.state_dict()}


def main(out: str):
    torch.set_num_threads(1)
    rank, world, device = distributed_context('cpu')
    res = {name: train(*case, rank=rank, world=world, device=device) for name, case in CASES.items()}
    if rank == 0: torch.save({'world': world, **res}, out)
    if world > 1: torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
