"""The app shares its models between concurrent requests: nothing may change what another request sees."""
import subprocess
import sys

import torch
from torch import nn

from stylenet import explain
from stylenet.stylize import Stylizer
from stylenet.transformer import TransformerNet


def trained_bn_model() -> nn.Module:
    """A small BN model with non-default running statistics, left in train mode."""
    torch.manual_seed(0)
    net = TransformerNet("batch", 8).train()
    with torch.no_grad():
        net(torch.rand(2, 3, 32, 32))
    return net


def snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "modes": [m.training for m in model.modules()],
            "types": [type(m) for m in model.modules()],
            "hooks": sum(len(m._forward_hooks) for m in model.modules())}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["types"] == before["types"] and after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert after["state"][key].dtype == value.dtype and torch.equal(after["state"][key], value), key


def test_stylizer_leaves_the_callers_model_alone():
    model = trained_bn_model()
    before = snapshot(model)
    stylizer = Stylizer(model, {"style": "s", "norm": "batch"}, torch.device("cpu"), precision="bf16")
    assert_unchanged(model, before)  # not folded, not cast, not switched to eval
    assert not any(isinstance(m, nn.BatchNorm2d) for m in stylizer.model.modules())  # its own copy is folded


def test_experiments_never_run_switch_or_hook_the_callers_model():
    model = trained_bn_model()
    first_norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    ran_shared = []  # deep copies carry this hook too, but only the shared module counts
    first_norm.register_forward_hook(lambda m, inp, out: ran_shared.append(m is first_norm))
    before = snapshot(model)
    photo, others = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    explain.train_vs_eval(model, photo)
    explain.batch_dependence(model, photo, others)
    explain.contrast_sensitivity(model, photo)
    stats = explain.first_norm_statistics(model, photo)
    assert ran_shared and not any(ran_shared)
    assert_unchanged(model, before)
    assert stats["before_mean"].shape == (8,)  # the statistics still come from the first norm layer


def test_importing_explain_leaves_the_matplotlib_backend_alone():
    """A library must not switch the process's plotting backend (issue 11, item 13)."""
    code = "import matplotlib; matplotlib.use('svg'); import stylenet.explain; print(matplotlib.get_backend())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "svg"
