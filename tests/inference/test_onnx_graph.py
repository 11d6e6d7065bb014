"""onnx_graph: the exported GELU and GroupNorm(C, C) chains and large depthwise 3D convolutions
rewritten, outputs unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mednet_pvs.inference.onnx_graph import fold_group_norm, fuse_gelu, rewrite, split_depthwise_conv  # noqa: E402


class Tiny(nn.Module):
    """MedNeXt's pieces: conv, GroupNorm with one channel per group, GELU; and a GroupNorm with
    fewer groups than channels, which must stay as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(4, 4)
        self.act = nn.GELU()
        self.norm2 = nn.GroupNorm(2, 4)
        self.out = nn.Conv3d(4, 2, 1)
        with torch.no_grad():
            for n in (self.norm, self.norm2):
                n.weight.uniform_(0.5, 1.5)
                n.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.out(self.norm2(self.act(self.norm(self.conv(x)))))


def _export(tmp_path):
    torch.manual_seed(0)
    net = Tiny().eval()
    x = torch.randn(2, 1, 8, 8, 8)
    path = tmp_path / "tiny.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, input_names=["x"],
                          output_names=["y"], external_data=False, verbose=False)
    with torch.inference_mode():
        ref = net(x).numpy()
    return onnx.load(str(path)), x.numpy(), ref


def _run(model, x):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.filterwarnings("ignore")
def test_rewrites_fuse_gelu_and_fold_one_group_per_channel_norms_only(tmp_path):
    model, x, ref = _export(tmp_path)
    before = _run(model, x)
    ops_before = [n.op_type for n in model.graph.node]
    assert "Erf" in ops_before and ops_before.count("InstanceNormalization") == 2
    done = rewrite(model)
    assert done == {"depthwise": 0, "gelu": 1, "group_norm": 1}
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "Erf" not in ops and ops.count("Gelu") == 1
    assert ops.count("InstanceNormalization") == 2  # the 2-group norm keeps its reshapes and affine
    assert ops.count("Reshape") == 2
    after = _run(model, x)
    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_allclose(after, ref, atol=1e-5)
    assert fuse_gelu(model) == 0 and fold_group_norm(model) == 0  # nothing left to do


def test_the_export_writes_the_rewritten_graph(tmp_path):
    from mednet_pvs.inference.backends import export_onnx

    path = tmp_path / "net.onnx"
    export_onnx(Tiny().eval(), 1, (8, 8, 8), path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Gelu" in ops and "Erf" not in ops


class Depthwise(nn.Module):
    """MedNeXt's depthwise convolutions: k5 (split), anisotropic (5, 7, 5) (split), k3 (kept: below
    the size the split pays off), k5 with stride 2 (kept) and without bias (split)."""

    def __init__(self) -> None:
        super().__init__()
        self.k5 = nn.Conv3d(3, 3, 5, padding=2, groups=3)
        self.aniso = nn.Conv3d(3, 3, (5, 7, 5), padding=(2, 3, 2), groups=3)
        self.k3 = nn.Conv3d(3, 3, 3, padding=1, groups=3)
        self.down = nn.Conv3d(3, 3, 5, stride=2, padding=2, groups=3)
        self.nobias = nn.Conv3d(3, 3, 5, padding=2, groups=3, bias=False)

    def forward(self, x):
        return self.nobias(self.down(self.k3(self.aniso(self.k5(x)))))


@pytest.mark.filterwarnings("ignore")
def test_large_depthwise_convolutions_become_summed_2d_convolutions(tmp_path):
    torch.manual_seed(0)
    net = Depthwise().eval()
    x = torch.randn(2, 3, 9, 8, 7)  # x, y, z all different: a wrong reshape cannot pass
    path = tmp_path / "dw.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, input_names=["x"],
                          output_names=["y"], external_data=False, verbose=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        ref = net(x).numpy()
    model = onnx.load(str(path))
    before = _run(model, x.numpy())
    assert split_depthwise_conv(model) == 3
    onnx.checker.check_model(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    kernels = sorted(tuple(a.ints) for n in convs for a in n.attribute if a.name == "kernel_shape")
    # 5 + 5 + 5 planes of 2D kernels; the k3 and the strided k5 stay 3D
    assert kernels == sorted([(5, 5)] * 10 + [(7, 5)] * 5 + [(3, 3, 3), (5, 5, 5)])
    after = _run(model, x.numpy())
    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_allclose(after, ref, atol=1e-5)
    single = _run(model, x.numpy()[:1])  # the batch stays dynamic
    np.testing.assert_allclose(single, after[:1], atol=1e-6)
    assert split_depthwise_conv(model) == 0
