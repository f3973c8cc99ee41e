"""Models: each named part maps to real parameters, the re-wrapped torchvision models compute what
torchvision's do, the extra layer starts as the identity, and weights load (or fail) clearly."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from editable_vision import ExtraLayer, VisionEditable, build_model, cifar_resnet18, densenet169, resnet18
from editable_vision.models import part_names, with_extra_layer


def assert_parts_partition(model: nn.Sequential, expected: list[str]) -> None:
    """The parts hold parameters, and together hold every parameter of the model exactly once."""
    assert part_names(model) == expected
    seen = {}
    for part in expected:
        editable = VisionEditable(model, part, input_shape=(3, 32, 32), num_classes=10)
        chosen = editable.editable_parameters()
        module_params = dict(model.get_submodule(part).named_parameters())
        assert len(chosen) == len(module_params) > 0
        for name, param in chosen.items():
            assert name.startswith(f"{part}.")
            assert param is module_params[name[len(part) + 1:]]
            assert name not in seen
            seen[name] = param
    assert set(seen) == {n for n, _ in model.named_parameters()}


def test_cifar_resnet18_parts_and_shapes():
    model = cifar_resnet18(num_classes=7, in_channels=1, width=8)
    assert_parts_partition(model, ["stem", "chain1", "chain2", "chain3", "chain4", "head"])
    # chain i has width * 2^(i-1) channels; the head is pool + flatten + linear(8 * width -> classes)
    for i in range(1, 5):
        assert model.get_submodule(f"chain{i}")[-1].conv2.out_channels == 8 * 2 ** (i - 1)
    assert isinstance(model.head[-1], nn.Linear) and model.head[-1].in_features == 64
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    with pytest.raises(ValueError, match="width"):
        cifar_resnet18(width=0)


def test_paper_width_is_resnet18_sized():
    params = sum(p.numel() for p in cifar_resnet18().parameters())
    assert 11.0e6 < params < 11.3e6  # the usual 11.17M of a CIFAR ResNet-18


def test_torchvision_resnet18_is_the_same_network():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    torch.manual_seed(0)
    model = resnet18().eval()
    assert_parts_partition(model, ["stem", "chain1", "chain2", "chain3", "chain4", "head"])
    assert model.chain3 is not None and isinstance(model.head, nn.Linear) and model.head.out_features == 1000
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_densenet169_parts_chain3_is_third_block_group():
    torch.manual_seed(0)
    reference = torchvision.models.densenet169().eval()
    torch.manual_seed(0)
    model = densenet169(num_classes=1000, weights=None).eval()
    assert_parts_partition(model, ["stem", "chain1", "chain2", "chain3", "chain4", "head"])
    assert model.chain3[0] is not None and type(model.chain3[0]).__name__ == "_DenseBlock"
    assert len(model.chain3[0]) == 32  # DenseNet-169's third dense block has 32 layers
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    small = densenet169(num_classes=5)
    assert small.head.out_features == 5


@pytest.mark.parametrize("make", [lambda: cifar_resnet18(width=4), lambda: resnet18(num_classes=10)])
def test_extra_layer_is_identity_at_start_and_editable(make):
    torch.manual_seed(0)
    model = make().eval()
    extended = with_extra_layer(model, hidden=32).eval()
    assert list(extended._modules)[-3:] == ["pool", "extra", "head"]
    assert isinstance(extended.extra, ExtraLayer) and extended.extra.dense1.out_features == 32
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(extended(x), model(x), rtol=0, atol=0)
    editable = VisionEditable(extended, "extra", input_shape=(3, 32, 32))
    assert set(editable.param_names) == {"extra.dense1.weight", "extra.dense1.bias", "extra.dense2.weight",
                                         "extra.dense2.bias"}
    # only the pooled features are cached: the suffix is exactly extra + head
    assert [n for n, _ in editable.suffix.named_children()] == ["extra", "head"]
    with pytest.raises(ValueError, match="already has an extra layer"):
        with_extra_layer(extended)


def test_build_model_spec_and_errors():
    model = build_model({"arch": "cifar_resnet18", "num_classes": 10, "in_channels": 1, "width": 4,
                         "extra_layer": 16})
    assert "extra" in part_names(model) and model.extra.dense1.out_features == 16
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"arch": "vgg"})
    with pytest.raises(ValueError, match="no pre-trained weights"):
        build_model({"arch": "cifar_resnet18"}, weights="IMAGENET1K_V1")


def test_weights_from_file_and_clear_errors(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = resnet18(weights=str(path))
    torch.testing.assert_close(model.head.weight, reference.fc.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.chain3[0].conv1.weight, reference.layer3[0].conv1.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="neither a file nor a torchvision weights name"):
        resnet18(weights="NO_SUCH_WEIGHTS")
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty_hub"))
    try:  # ImageNet weights that are not cached here: a clear error, never a download
        with pytest.raises(FileNotFoundError, match="not available locally"):
            densenet169(weights="IMAGENET1K_V1")
    finally:
        torch.hub.set_dir(hub)
