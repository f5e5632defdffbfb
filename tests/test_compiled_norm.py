"""The compiled training instance norm computes what nn.InstanceNorm2d computes, on the same parameters."""
from pathlib import Path

import pytest
import torch
from torch import nn

from stylenet import compiled_norm
from stylenet.compiled_norm import CompiledInstanceNorm2d, compile_instance_norms
from stylenet.train import Recipe, StepMode, new_run
from stylenet.transformer import TransformerNet


def stock_and_compiled(channels: int) -> tuple[nn.InstanceNorm2d, CompiledInstanceNorm2d]:
    stock = nn.InstanceNorm2d(channels, affine=True)
    with torch.no_grad():
        stock.weight.uniform_(0.5, 2.0)
        stock.bias.uniform_(-1.0, 1.0)
    return stock, CompiledInstanceNorm2d.like(stock)


def forward_backward(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.detach().requires_grad_()
    layer.zero_grad()
    y = layer(x)
    y.backward(grad)
    return y.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_matches_stock_instance_norm_forward_and_backward(memory_format):
    assert compiled_norm.compiled_instance_norm() is not None  # a new machine has a C++ compiler (g++)
    torch.manual_seed(0)
    stock, compiled = stock_and_compiled(6)
    x = (torch.randn(3, 6, 10, 12) * 4 + 2).contiguous(memory_format=memory_format)
    grad = torch.randn(3, 6, 10, 12).contiguous(memory_format=memory_format)
    for want, got in zip(forward_backward(stock, x, grad), forward_backward(compiled, x, grad), strict=True):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    assert compiled(x).is_contiguous(memory_format=memory_format)  # no layout change to undo


def test_bf16_autocast_forward_and_backward_close():
    torch.manual_seed(0)
    stock, compiled = stock_and_compiled(8)
    x = torch.randn(2, 8, 16, 16).bfloat16().contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 8, 16, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = forward_backward(stock, x, grad), forward_backward(compiled, x, grad)
    assert got[0].dtype == want[0].dtype == torch.bfloat16
    assert got[1].dtype == want[1].dtype == torch.bfloat16
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g.float(), w.float(), atol=0.05, rtol=0.02)


def test_a_training_step_is_the_same_with_and_without_it(painting):
    from dataclasses import replace

    from stylenet.train import TrainStep, style_targets
    from stylenet.vgg import VGGFeatures

    recipe = Recipe(style=str(painting), content="", width=8, image_size=32, batch_size=2, style_size=64)
    cpu = torch.device("cpu")
    vgg = VGGFeatures.oxford().to(memory_format=torch.channels_last)
    grams = style_targets(vgg, str(painting), recipe.style_size, cpu)
    batch = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    losses = {}
    for compiled in (True, False):
        mode = replace(StepMode.fast(cpu), bf16=False, compiled_instance_norm=compiled)
        step, runs = TrainStep(recipe, vgg, grams, mode, cpu), [new_run("instance", recipe, mode, cpu, Path(), Path())]
        assert any(isinstance(m, CompiledInstanceNorm2d) for m in runs[0].model.modules()) == compiled
        losses[compiled] = [step(runs, batch, i)["instance"]["total"].item() for i in range(3)]
    assert losses[True][2] < losses[True][0]  # it trains
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-5)  # the same forward
    # then the same training up to rounding (Adam's first steps amplify it: about 1e-3 after two)
    assert losses[True][1:] == pytest.approx(losses[False][1:], rel=5e-3)


def test_swap_keeps_parameters_and_checkpoint_keys():
    model = TransformerNet("instance", width=4)
    before = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    compile_instance_norms(model)
    assert sum(isinstance(m, CompiledInstanceNorm2d) for m in model.modules()) == 3 + 10 + 2
    assert [id(p) for p in model.parameters()] == before  # an optimizer made earlier still updates them
    assert list(model.state_dict()) == keys  # loads into a plain TransformerNet
    TransformerNet("instance", width=4).load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="only affine instance norms"):
        CompiledInstanceNorm2d.like(nn.InstanceNorm2d(4))


def test_fast_mode_compiles_only_instance_norms_on_the_cpu():
    assert StepMode.fast(torch.device("cpu")).compiled_instance_norm
    assert not StepMode.fast(torch.device("cuda")).compiled_instance_norm
    recipe = Recipe(style="", content="", width=4)
    fast = StepMode.fast(torch.device("cpu"))
    runs = {norm: new_run(norm, recipe, fast, torch.device("cpu"), Path(), Path()) for norm in ("instance", "batch")}
    assert any(isinstance(m, CompiledInstanceNorm2d) for m in runs["instance"].model.modules())
    assert not any(isinstance(m, CompiledInstanceNorm2d) for m in runs["batch"].model.modules())
    plain = new_run("instance", recipe, StepMode(), torch.device("cpu"), Path(), Path())
    assert not any(isinstance(m, CompiledInstanceNorm2d) for m in plain.model.modules())


def test_eval_mode_uses_the_stock_layer(monkeypatch):
    stock, compiled = stock_and_compiled(4)
    monkeypatch.setattr(compiled_norm, "compiled_instance_norm", lambda: pytest.fail("compiled in eval mode"))
    x = torch.randn(1, 4, 7, 9)
    torch.testing.assert_close(compiled.eval()(x), stock(x))


def test_without_a_compiler_says_so_once_and_uses_the_stock_maths(monkeypatch, capsys):
    def broken_compile(fn, **options):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    compiled_norm.compiled_instance_norm.cache_clear()
    monkeypatch.setattr(torch, "compile", broken_compile)
    try:
        stock, compiled = stock_and_compiled(4)
        x = torch.randn(2, 4, 6, 6)
        torch.testing.assert_close(compiled(x), stock(x))
        compiled(x)
    finally:
        compiled_norm.compiled_instance_norm.cache_clear()
    err = capsys.readouterr().err
    assert err.count("torch.compile is not available here (RuntimeError)") == 1
    assert len(err.strip().splitlines()) == 1
