"""onnx_graph: the exported GELU and GroupNorm(C, C) chains rewritten, outputs unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mednet_pvs.inference.onnx_graph import fold_group_norm, fuse_gelu, rewrite  # noqa: E402


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
    assert done == {"gelu": 1, "group_norm": 1}
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
