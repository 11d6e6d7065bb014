"""Compiled CPU backends (issue 19): ONNX Runtime equals PyTorch on a tile-based prediction, the
exported model is cached on disk and reused, and every misuse is one line."""
from __future__ import annotations

import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch

from mednet_pvs.cli.main import main
from mednet_pvs.errors import ConfigError
from mednet_pvs.inference import PVSModel, backends
from mednet_pvs.inference.backends import (
    CACHE_ENV,
    OnnxRuntimeNetwork,
    apply_backend,
    physical_cores,
    resolve_backend,
)
from mednet_pvs.nets import create_network
from mednet_pvs.synth import PhantomConfig, make_phantom

ONNX_MISSING = "--backend onnxruntime needs the onnx extra: pip install 'mednet-pvs[onnx]'"
TINY = {"in_channels": 1, "n_classes": 2, "n_channels": 4, "kernel_size": 3, "exp_r": 2, "block_counts": [1] * 9,
        "deep_supervision": True}


def tiny_model() -> PVSModel:
    """A 4-channel MedNeXt (seeded random weights), 32^3 tiles, 3 tiles per call (so a volume of 4
    tiles calls with 3 and then 1: the exported graph's batch is dynamic), mirroring on one axis."""
    torch.manual_seed(0)
    net = create_network("mednext", **TINY)
    return PVSModel(net, {"name": "mednext", "kwargs": TINY}, {"target_spacing": [1.0, 1.0, 1.0]},
                    {"window": {"patch_size": 32, "batch_size": 3, "mirror_axes": [0]}}, device="cpu")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PhantomConfig(anatomy="procedural", shape=(48, 40, 32), contrast="T2w", burden=3), seed=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model exported once into a fresh cache; the seconds the first use_backend took."""
    pytest.importorskip("onnxruntime")
    return _first_use("onnxruntime", tmp_path_factory.mktemp("compiled"))


def _first_use(backend: str, cache):
    """A tiny model on ``backend`` with ``cache`` as the compiled-model cache; (model, cache, seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(cache))
        model = tiny_model()
        t0 = time.perf_counter()
        model.use_backend(backend)
        first = time.perf_counter() - t0
    return model, cache, first


def _refuse(monkeypatch, step: str, message: str) -> list:
    """Replace ``backends.<step>`` (an export or compile step) by one that records each call and
    raises ``ConfigError(message)``; returns the list of calls."""
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise ConfigError(message)

    monkeypatch.setattr(backends, step, refuse)
    return calls


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.slow
def test_onnxruntime_prediction_equals_torch(exported, phantom, monkeypatch):
    model, _, _ = exported
    calls = []
    real = OnnxRuntimeNetwork.__call__

    def counted(self, x):
        calls.append(tuple(x.shape))
        return real(self, x)

    monkeypatch.setattr(OnnxRuntimeNetwork, "__call__", counted)
    scan = (phantom.image, phantom.affine)
    ort = model.predict(scan)
    # batches of 3 tiles and then 1, whose two mirrored copies share one call where 2+ cores split it
    assert calls and sorted({c[0] for c in calls}) == [min(physical_cores(), 2), 3], "the compiled network ran"
    reference = tiny_model()  # same seed: same weights, torch backend
    assert reference.weights_sha256() == model.weights_sha256()
    ref = reference.predict(scan)
    assert ref.info["backend"] == "torch" and ort.info["backend"] == "onnxruntime"
    assert np.abs(ort.probabilities - ref.probabilities).max() < 1e-3
    cut = float(np.median(ref.probabilities[ref.probabilities > 0]))  # random weights: cut where both labels occur
    a, b = ref.probabilities > cut, ort.probabilities > cut
    assert 0 < a.sum() < a.size and _dice(a, b) >= 0.999
    assert ort.info["backend_build"]["threads"] == physical_cores()
    assert model.provenance()["settings"]["backend"] == "onnxruntime"
    assert reference.provenance()["settings"]["backend"] == "torch"


def test_a_batch_is_split_over_single_threaded_runs_with_the_same_bits(exported):
    model, _, _ = exported
    path = model._runners[0].path
    x = torch.randn(3, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    one = OnnxRuntimeNetwork(path, 1)
    two = OnnxRuntimeNetwork(path, 2)
    ref = one(x)
    assert torch.equal(two(x), ref)  # 3 tiles: parts of 2 and 1 at once
    assert two._wide is None, "a batch of several tiles ran on the single-threaded session only"
    assert torch.equal(two(x[:1]), ref[:1])  # one tile: the intra-op session, built now
    assert two._wide is not None and two._wide is not two.session


@pytest.mark.slow
def test_the_compiled_model_is_cached_and_reused(exported, monkeypatch):
    model, cache, first = exported
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert len(list(cache.glob("*.onnx"))) == 1 and len(list(cache.glob("*.json"))) == 1
    again = tiny_model()  # a new model with the same weights finds the file
    t0 = time.perf_counter()
    again.use_backend("onnxruntime", threads=1)  # threads are not part of the key
    second = time.perf_counter() - t0
    assert second < 0.1 * first, f"second load {second:.2f} s vs first {first:.2f} s"
    assert again.backend_build["cached"] == [True] and again.backend_build["convert_s"] == 0
    assert again.backend_build["threads"] == 1 and again._runners[0].threads == 1
    assert model.backend_build["cached"] == [False] and model.backend_build["convert_s"] > 0
    assert not list(cache.glob(".*tmp*")), "no temporary file left behind"
    exports = _refuse(monkeypatch, "export_onnx", "export attempted")
    again.use_backend("onnxruntime")  # same weights: from the cache, no export
    other = tiny_model()
    with torch.no_grad():
        next(other.networks[0].parameters()).add_(1.0)
    with pytest.raises(ConfigError, match="export attempted"):  # other weights: another key
        other.use_backend("onnxruntime")
    assert len(exports) == 1


def test_missing_package_is_one_line(monkeypatch, tmp_path, phantom, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    model = tiny_model()
    with pytest.raises(ConfigError) as err:
        model.use_backend("onnxruntime")
    assert str(err.value).startswith(ONNX_MISSING) and "\n" not in str(err.value)
    assert model.use_backend("auto").backend == "torch", "auto falls back to torch without the extra"
    f = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image, phantom.affine), f)
    code = main(["predict", "-i", str(f), "-o", str(tmp_path / "out"), "-m", "mednet-pvs-synth-t2w", "--device", "cpu",
                 "--backend", "onnxruntime", "-q"])
    err_text = capsys.readouterr().err
    assert code == 1 and ONNX_MISSING in err_text and "Traceback" not in err_text
    assert not (tmp_path / "cache").exists()


def test_backend_names_and_devices():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("torch", cpu) == "torch" and resolve_backend("auto", cuda) == "torch"
    for name in ("onnxruntime", "openvino", "inductor"):
        with pytest.raises(ConfigError, match=f"--backend {name} runs on the CPU"):
            resolve_backend(name, cuda)
    with pytest.raises(ConfigError, match=r"--backend must be one of torch, onnxruntime, openvino, inductor, auto, not 'tensorrt'"):
        resolve_backend("tensorrt", cpu)

    class NoNetworks:  # e.g. the Frangi model
        name = "frangi-t2w"

    plain = NoNetworks()
    assert apply_backend(plain, "auto") is plain and apply_backend(plain, "torch") is plain
    for name in ("onnxruntime", "inductor"):
        with pytest.raises(ConfigError, match="is for network models; frangi-t2w runs only as it is"):
            apply_backend(plain, name)
    with pytest.raises(ConfigError, match="--precision bf16 is an option of --backend openvino only"):
        apply_backend(plain, "torch", precision="bf16")


def test_auto_picks_onnxruntime_on_the_cpu_when_installed(monkeypatch):
    pytest.importorskip("onnxruntime")
    seen = []

    def build(name, *args, **kwargs):
        seen.append(name)
        return None, backends.BackendBuild("torch")

    monkeypatch.setattr(backends, "build_backend", build)
    tiny_model().use_backend("auto")
    assert seen == ["onnxruntime"]
    dense = create_network("nnunet_plain", input_channels=1, num_classes=2, patch_size=[32, 32, 32])
    assert resolve_backend("auto", torch.device("cpu"), [dense]) == "torch", "no gain measured for dense convolutions"


def test_predict_backend_option(tmp_path, phantom, capsys, monkeypatch):
    f = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image, phantom.affine), f)
    calls = []

    def record(self, name="auto", *, threads=None, precision="fp32"):
        calls.append(name if precision == "fp32" else f"{name}/{precision}")
        raise ConfigError("stop here")  # the option reached the model; no need to predict

    monkeypatch.setattr(PVSModel, "use_backend", record)
    from mednet_pvs.inference import cpu_memory

    reused = []
    monkeypatch.setattr(cpu_memory, "reuse_freed_memory", lambda: reused.append(True))
    args = ["predict", "-i", str(f), "-m", "mednet-pvs-synth-t2w", "--device", "cpu", "-q"]
    assert main([*args, "-o", str(tmp_path / "a"), "--backend", "auto"]) == 1
    assert main([*args, "-o", str(tmp_path / "b"), "--backend", "ONNXRuntime"]) == 1
    assert main([*args, "-o", str(tmp_path / "b"), "--backend", "openvino", "--precision", "BF16"]) == 1
    assert main([*args, "-o", str(tmp_path / "b"), "--backend", "Inductor"]) == 1
    assert calls == ["auto", "onnxruntime", "openvino/bf16", "inductor"]
    assert len(reused) == 4, "a CPU run keeps freed memory for the next tile (cpu_memory)"
    capsys.readouterr()
    for bad, problem in ((["--backend", "onnxruntime", "--precision", "bf16"], "--precision bf16 is an option of --backend openvino only"),
                         (["--backend", "openvino", "--precision", "int4"], "--precision must be one of fp32, bf16, not 'int4'")):
        assert main([*args, "-o", str(tmp_path / "d"), *bad]) == 1
        err = capsys.readouterr().err.strip()
        assert problem in err and err.count("\n") == 0, err
        assert not (tmp_path / "d").exists(), "nothing written"
    for command in (["predict", *args[1:], "-o", str(tmp_path / "c")], ["demo", "--out", str(tmp_path / "c"), "--anatomy", "procedural", "-q"]):
        code = main([*command, "--backend", "tensorrt"])  # one line (a usage error where the option is a choice)
        err = capsys.readouterr().err.strip()
        assert code in (1, 2) and err.count("\n") == 0 and "tensorrt" in err and "onnxruntime" in err, err
        assert not (tmp_path / "c").exists(), "nothing written"
    assert calls == ["auto", "onnxruntime", "openvino/bf16", "inductor"]


OPENVINO_MISSING = "--backend openvino needs the openvino extra: pip install 'mednet-pvs[openvino]'"


@pytest.mark.slow
def test_openvino_fp32_equals_torch_and_bf16_is_an_option(monkeypatch, tmp_path, phantom):
    """OpenVINO compiles the cached ONNX graph; fp32 (hint set explicitly: on AMX CPUs the plugin's
    default is bf16) equals torch within 1e-3; bf16 runs where the CPU has it, else one line."""
    ov = pytest.importorskip("openvino")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    scan = (phantom.image, phantom.affine)
    ref = tiny_model().predict(scan)
    model = tiny_model().use_backend("openvino")
    assert isinstance(model._runners[0], backends.OpenVinoNetwork) and model.backend == "openvino"
    assert model._runners[0].compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    pred = model.predict(scan)
    assert pred.info["backend"] == "openvino" and pred.info["backend_build"]["precision"] == "fp32"
    assert np.abs(pred.probabilities - ref.probabilities).max() < 1e-3
    assert model.provenance()["settings"]["precision"] == "fp32"
    assert list((tmp_path / "cache").glob("*.onnx")), "the ONNX Runtime export is the graph OpenVINO compiles"
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if has_bf16:
        fast = tiny_model().use_backend("openvino", precision="bf16")
        assert fast._runners[0].compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
        p16 = fast.predict(scan)
        assert 0 < np.abs(p16.probabilities - ref.probabilities).max() < 0.2  # reduced precision: close, not equal
        assert fast.provenance()["settings"]["precision"] == "bf16-openvino"
    else:
        with pytest.raises(ConfigError, match="--precision bf16 needs a CPU with native bf16"):
            tiny_model().use_backend("openvino", precision="bf16")


def test_openvino_missing_is_one_line(monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino fails
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as err:
        tiny_model().use_backend("openvino")
    assert str(err.value).startswith(OPENVINO_MISSING) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists(), "nothing exported before the check"


def test_bf16_without_cpu_support_is_one_line(monkeypatch, tmp_path):
    ov = pytest.importorskip("openvino")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    real = ov.Core.get_property

    def no_bf16(self, device, name):
        value = real(self, device, name)
        return [c for c in value if c != "BF16"] if name == "OPTIMIZATION_CAPABILITIES" else value

    monkeypatch.setattr(ov.Core, "get_property", no_bf16)
    with pytest.raises(ConfigError, match="--precision bf16 needs a CPU with native bf16 \\(AVX512-BF16 or AMX\\); OpenVINO reports none here"):
        tiny_model().use_backend("openvino", precision="bf16")


def test_a_graph_openvino_cannot_compile_is_one_line(tmp_path):
    pytest.importorskip("openvino")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ConfigError) as err:
        backends.OpenVinoNetwork(bad, 1)
    assert str(err.value).startswith("--backend openvino could not compile broken.onnx (") and "\n" not in str(err.value)


# ------------------------------------------------------------------------------ inductor (AOTInductor)
@pytest.fixture(scope="module")
def inductor_built(tmp_path_factory):
    """The tiny model compiled once by AOTInductor (batch 3: the window's) into a fresh cache; the
    seconds the first use_backend took (about 40 s on 2 cores: most of it the C++ compiler)."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception:  # noqa: BLE001
        pytest.skip("no C++ compiler on this machine")
    return _first_use("inductor", tmp_path_factory.mktemp("aoti"))


@pytest.mark.slow
def test_inductor_prediction_equals_torch(inductor_built, phantom, monkeypatch):
    model, _, _ = inductor_built
    runner = model._runners[0]
    assert isinstance(runner, backends.InductorNetwork) and runner.batch == 3 and runner.preferred_batch == 3
    shapes = []
    real = runner.module

    class Counted:  # what the compiled package itself is given
        def __call__(self, x):
            shapes.append(tuple(x.shape))
            return real(x)

    monkeypatch.setattr(runner, "module", Counted())
    scan = (phantom.image, phantom.affine)
    pred = model.predict(scan)
    # 4 tiles, mirrored on one axis: 3 tiles twice, then the last tile and its mirror padded to 3
    assert shapes and {s[0] for s in shapes} == {3}, shapes
    ref = tiny_model().predict(scan)
    assert pred.info["backend"] == "inductor" and pred.info["backend_build"]["precision"] == "fp32"
    assert np.abs(pred.probabilities - ref.probabilities).max() < 1e-3
    cut = float(np.median(ref.probabilities[ref.probabilities > 0]))
    a, b = ref.probabilities > cut, pred.probabilities > cut
    assert 0 < a.sum() < a.size and _dice(a, b) >= 0.999
    assert model.provenance()["settings"]["backend"] == "inductor"
    x = torch.randn(5, 1, 32, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eager = backends._FirstOutput(tiny_model().networks[0])(x)
    assert torch.allclose(runner(x), eager, atol=1e-4), "a batch of 5: parts of 3 and 2 (padded)"
    with pytest.raises(ConfigError, match=r"was compiled for tiles of shape \[1, 32, 32, 32\] \(C, X, Y, Z\), not \[1, 32, 32, 16\]"):
        runner(x[..., :16])  # the package itself would crash the process


@pytest.mark.slow
def test_the_inductor_package_is_cached_and_keyed_by_threads(inductor_built, monkeypatch):
    model, cache, first = inductor_built
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert len(list(cache.glob("*.pt2"))) == 1 and len(list(cache.glob("*.json"))) == 1
    again = tiny_model()
    t0 = time.perf_counter()
    again.use_backend("inductor")
    second = time.perf_counter() - t0
    assert second < 0.1 * first, f"second load {second:.2f} s vs first {first:.2f} s"
    assert again.backend_build["cached"] == [True] and model.backend_build["cached"] == [False]
    assert not list(cache.glob(".*tmp*")), "no temporary file left behind"
    compiled = _refuse(monkeypatch, "export_inductor", "compile attempted")
    with pytest.raises(ConfigError, match="compile attempted"):  # its loops are built for a thread count
        tiny_model().use_backend("inductor", threads=physical_cores() + 1)
    from mednet_pvs.inference.model import tensor_digest

    net = again.networks[0]
    same, _ = backends.compile_inductor(net, tensor_digest(net.state_dict()), 1, (32, 32, 32), batch=3, cache=cache)
    assert same.path == again._runners[0].path and len(compiled) == 1
    with pytest.raises(ConfigError, match="compile attempted"):  # and for a batch size
        backends.compile_inductor(net, tensor_digest(net.state_dict()), 1, (32, 32, 32), batch=4, cache=cache)
    assert len(compiled) == 2
    same.path.write_bytes(b"damaged")  # a damaged cache entry is built again (last: it spoils the fixture's cache)
    with pytest.raises(ConfigError, match="compile attempted"):
        tiny_model().use_backend("inductor")
    assert len(compiled) == 3 and not same.path.exists()


def test_inductor_without_a_compiler_is_one_line(monkeypatch, tmp_path):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as err:
        tiny_model().use_backend("inductor")
    assert str(err.value).startswith("--backend inductor needs a C++ compiler") and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists(), "nothing compiled before the check"
