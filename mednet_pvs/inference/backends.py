"""Where the networks run: PyTorch (the reference), ONNX Runtime, OpenVINO or AOTInductor (compiled CPU code).

    model = load_pretrained("mednet-pvs-synth-t2w", device="cpu")
    model.use_backend("onnxruntime")     # exports once per weights/tile/versions, cached on disk
    pred = model.predict("scan.nii.gz")  # pred.info["backend"] == "onnxruntime"

A backend turns each member network into a callable ``(B, C, x, y, z) float32 tensor -> (B, K, x, y,
z) logits``, the contract of :func:`~mednet_pvs.inference.sliding_window.sliding_window_predict`;
tiling, Gaussian stitching, mirroring and the way back to the input grid stay the same code.

``onnxruntime`` (the ``onnx`` extra: ``pip install 'mednet-pvs[onnx]'``) exports the network with
``torch.onnx.export(dynamo=True, opset_version=18)`` at the model's tile size (batch dimension
dynamic, so the last, smaller batch of a volume needs no padding), fuses its GELUs, folds
MedNeXt's GroupNorm(C, C) (:mod:`~mednet_pvs.inference.onnx_graph`: 1.26x on the bundled S k3) and
splits depthwise convolutions of kernel >= 5 into 2D ones (1.4-1.5x on L k5), and runs it in fp32 on
ONNX Runtime's CPU execution provider with every graph optimisation on, a batch split over
single-threaded runs at once (:class:`OnnxRuntimeNetwork`). Against MONAI in CPU time, both with glibc's allocator defaults
(``benchmarks/cpu_backends_log.md``; the README compares every method with the same allocator):
whole brain, bundled S k3, 3.33x (``benchmarks/results/cpu_backends_whole_monai_cpu2.txt``); medians
of 3 interleaved rounds (``cpu_backends_rounds_cpu2.txt``): S k3 region 3.43x, S k3 one tile with
TTA 1.49x, L k5 1.18x, ResEnc-M 1.06x.

Measured (torch 2.13 CPU, ONNX Runtime 1.32, OpenVINO 2026.4, 2-core AMD EPYC (Zen 3, AVX2 + FMA,
no AVX-512) shared with other jobs, load 12-14; bundled MedNeXt-S k3, batch of 2 x 1 x 64^3 tiles,
interleaved, CPU seconds): ONNX Runtime 2.0-2.9 s, PyTorch channels-last 4.4-4.9 s (quiet machine;
8.7-13 s at that load), max |logit difference| 1.5e-4 on |logits| up to ~15. The export takes
11-27 s once (load-dependent); building a session from the cached file 0.1 s.

OpenVINO (``openvino``, the ``openvino`` extra) compiles the same exported graph. On the AMD EPYC
above (AVX2) it was no faster than ONNX Runtime: from the ONNX file (3 s to compile) 2.2-2.4 CPU s,
from the PyTorch module (``openvino.convert_model``, 100 s) 2.3-2.4 CPU s, against 2.0-2.9 s for ONNX
Runtime in the same rounds, max |logit difference| 1.4e-4 with ``INFERENCE_PRECISION_HINT`` f32. The
0.067 difference of issue 19's trial: OpenVINO's CPU plugin runs in bf16 by default where the CPU
has native bf16, so :class:`OpenVinoNetwork` sets f32 explicitly. On a Xeon with AVX-512 and AMX
(session 11) OpenVINO is the faster fp32 runtime for dense convolutions (nnU-Net ResEnc-M 4.40 vs 8.14
CPU s per batch of 2 x 64^3) and its bf16 (``precision="bf16"``, AMX) 5-10x faster again (0.77 s),
not at parity (``benchmarks/results/openvino_trial_cpu2.txt``).

Whole-brain figures (``benchmarks/bench_cpu_backends.py``, ``benchmarks/cpu_backends_log.md``): bundled
S k3, 80 tiles, 93 vs 378 CPU s (torch channels-last), labels identical; regions against MONAI:
2.07x (S k3), 1.75x (S k3, TTA), 1.46x (L k5), 0.99x (nnU-Net ResEnc-M, dense convolutions: hence
``auto`` picks onnxruntime only for networks with depthwise 3D convolutions). Against torch
channels-first the probabilities differ by <= 1.7e-5 (4-tile region); channels-last torch differs
from both by up to 8.4e-4 (1.5e-3 on the whole brain). Intra-op threads, 1 vs 2 on the loaded
2-core machine: 1.7-3.2 vs 2.0-4.3 CPU s per batch, wall no better with 2; the default stays at the
physical cores (a quiet machine's choice), ``use_backend(threads=)`` to change it.

``inductor`` (no extra package; a C++ compiler) is PyTorch's own ahead-of-time compiler
(:func:`export_inductor`: ``torch.export``, then ``aoti_compile_and_package`` with the weights
frozen, so oneDNN gets pre-packed convolution weights and the normalisations and activations are
fused into generated C++ loops). The package is native code for this CPU, built for one batch size
and thread count (:class:`InductorNetwork`). Measured on the AMX Xeon (medians of 3 interleaved
rounds, CPU seconds, ``benchmarks/results/cpu_backends_inductor_rounds_cpu2.txt``): it is the
fastest fp32 backend for MedNeXt-L k5 with full batches (4 tiles: 22.6 s against 25.4 ONNX
Runtime, 36.4 OpenVINO, 31.3 torch, 49.0 MONAI: 2.17x MONAI), the leanest in memory (+0.6 GiB
against +2.8 for ONNX Runtime) and the closest to torch fp32 (max |dp| <= 5e-6), but slower than
ONNX Runtime or OpenVINO for the 16-channel S k3 (2.12x MONAI against 2.85x / 4.28x) and ResEnc-M
(1.20x against 1.14x / 1.73x). Compiling takes 38-83 s once (the C++ compiler); loading 0.01-0.4
s. Not a default: ``auto`` stays ONNX Runtime (no compiler needed, exports in 10-25 s).

All of these figures, MONAI's included, were measured with glibc's default allocator, which maps
every large activation afresh and faults it in at every call. With
:func:`~mednet_pvs.inference.cpu_memory.reuse_freed_memory` for every method (what ``predict``
sets on the CPU; ``benchmarks/results/cpu_backends_malloc_cpu2.txt``) MONAI is 1.4-2.8x faster and
the best backend per network reaches 1.90x MONAI (OpenVINO fp32, S k3), 1.61x (inductor, L k5, 4
tiles; torch 1.59x) and 1.43x (OpenVINO fp32, ResEnc-M).

Reduced precision: only OpenVINO in bf16 (``precision="bf16"``) on CPUs with native bf16; ONNX
Runtime's CPU provider has no fast fp16 or bf16 3D convolutions. PyTorch's own bf16 autocast on the
same AMX Xeon: ResEnc-M 1.8x faster than fp32, MedNeXt slower (S k3 3.2-3.4 vs 2.1-3.1 CPU s, L k5
23-27 vs 19-20 s per batch of 2), so not offered.

The cache (:func:`cache_dir`: ``$MEDNET_PVS_CACHE``, default ``~/.cache/mednet-pvs/compiled``)
holds one ``<key>.onnx`` (written atomically) and a ``<key>.json`` describing it per (member
weights sha256, input channels, tile shape, the network's source code, torch / onnx / onnxscript /
onnxruntime versions, opset). Batch size and threads are not in the key: the file has a dynamic
batch and serves any thread count (sessions are built from it in ~0.1 s). An AOTInductor package
is one ``<key>.pt2`` and its ``<key>.json`` per (weights, channels, tile, batch, threads, network
code, torch version, CPU instruction set and machine: :func:`inductor_key`).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.inference.onnx_graph import GRAPH_REWRITES, rewrite
from mednet_pvs.io import atomic_path, write_json

#: the backends ``use_backend``/``--backend`` accept (``auto``: onnxruntime on the CPU where installed)
BACKENDS = ("torch", "onnxruntime", "openvino", "inductor", "auto")
#: the backends that run compiled graphs on the CPU
CPU_BACKENDS = ("onnxruntime", "openvino", "inductor")
#: precisions of the compiled CPU backends (``--precision``): fp32 (parity with torch, the default);
#: bf16 only with ``openvino`` on a CPU with native bf16 (AVX512-BF16 / AMX)
PRECISIONS = ("fp32", "bf16")
#: environment variable naming the compiled-model cache folder
CACHE_ENV = "MEDNET_PVS_CACHE"
OPSET = 18
_ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")


def cache_dir() -> Path:
    """The compiled-model cache: ``$MEDNET_PVS_CACHE`` or ``~/.cache/mednet-pvs/compiled``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mednet-pvs" / "compiled"


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads counted once);
    ``os.cpu_count()`` where Linux's topology files are missing."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def _require_onnx() -> Any:
    """Import the onnx extra's packages; one line naming the install command where one is missing."""
    mods = []
    for name in _ONNX_PACKAGES:
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            raise ConfigError("--backend onnxruntime needs the onnx extra: pip install 'mednet-pvs[onnx]' "
                              f"({name} is not installed)") from None
    return mods[0]


def _require_openvino() -> Any:
    """Import OpenVINO (and the onnx extra, which exports the graph it compiles); one line if missing."""
    _require_onnx()
    try:
        return importlib.import_module("openvino")
    except ImportError:
        raise ConfigError("--backend openvino needs the openvino extra: pip install 'mednet-pvs[openvino]' "
                          "(openvino is not installed)") from None


def check_precision(precision: str, backend: str) -> str:
    """``precision`` lower-cased if :data:`PRECISIONS` holds it and ``backend`` offers it, else one line."""
    key = str(precision).strip().lower()
    if key not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if key != "fp32" and backend != "openvino":
        raise ConfigError(f"--precision {key} is an option of --backend openvino only (the {backend} backend runs fp32)")
    return key


def onnx_available() -> bool:
    """Whether the onnx extra is installed (without importing it)."""
    from importlib.util import find_spec

    try:
        return all(find_spec(name) is not None for name in _ONNX_PACKAGES)
    except (ImportError, ValueError):  # e.g. sys.modules[name] = None
        return False


def check_backend(name: str) -> str:
    """``name`` lower-cased if it is one of :data:`BACKENDS`, else a one-line :class:`ConfigError`."""
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    return key


def has_depthwise_3d(networks: Sequence[nn.Module]) -> bool:
    """Whether any network has grouped (depthwise) 3D convolutions, i.e. is a MedNeXt."""
    return any(isinstance(m, nn.Conv3d) and m.groups > 1 for net in networks for m in net.modules())


def resolve_backend(name: str, device: torch.device, networks: Sequence[nn.Module] | None = None) -> str:
    """The backend to run: ``name`` checked; ``auto`` is ``onnxruntime`` on the CPU where the onnx
    extra is installed and the networks have depthwise 3D convolutions (MedNeXt: measured 1.3-4x
    less CPU time than torch at equal labels), else ``torch`` (nnU-Net's dense convolutions: no
    gain measured; see the README's CPU backend figures). ``networks=None``: not checked.

    Raises:
        ConfigError: an unknown name, or ``onnxruntime`` on a device other than the CPU.
    """
    key = check_backend(name)
    if key == "auto":
        gains = networks is None or has_depthwise_3d(networks)
        return "onnxruntime" if device.type == "cpu" and gains and onnx_available() else "torch"
    if key in CPU_BACKENDS and device.type != "cpu":
        raise ConfigError(f"--backend {key} runs on the CPU, not {device.type} (use --device cpu, or --backend torch)")
    return key


class _FirstOutput(nn.Module):
    """A network's full-resolution output only (deep supervision drops out of the exported graph)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


class OnnxRuntimeNetwork:
    """A network compiled by ONNX Runtime: called as ``net(x)`` with ``x`` a (B, C, *tile) float32
    tensor (any batch size, the exported tile size) and returns (B, K, *tile) float32 logits on the CPU.

    With ``threads`` > 1, a batch of several tiles is split into ``threads`` parts run at once on one
    single-threaded session (ONNX Runtime releases the GIL), and only a single tile uses ``threads``
    intra-op threads (a second session, built when first needed). Same outputs bit for bit (ONNX
    Runtime's kernels give each sample of a batch the same result). Measured on 2 cores, batch of
    2 x 64^3, 4 interleaved rounds: MedNeXt-S k3 0.44-0.59 s wall / 0.85-1.08 CPU s split against
    0.50-0.63 / 0.99-1.26 with 2 intra-op threads; L k5 (2 rounds) 5.0-5.9 / 9.9-10.8 against
    6.4-6.9 / 12.7-13.6: intra-op threads wait at every operator's end, whole runs do not.

    Args:
        path: the ``.onnx`` file.
        threads: CPU cores to use (one inter-op thread per session; operators run in sequence).
    """

    def __init__(self, path: Path, threads: int) -> None:
        self.path = Path(path)
        self.threads = max(1, int(threads))
        self.session = self._session(1)
        self._wide: Any = None if self.threads > 1 else self.session
        self._input = self.session.get_inputs()[0].name

    @property
    def preferred_batch(self) -> int:
        """Tiles per call that keep every core busy (the sliding window puts mirrored copies of a
        smaller batch into one call up to this)."""
        return self.threads

    def _session(self, intra: int) -> Any:
        ort = _require_onnx()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only
        return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def _run(self, session: Any, arr: np.ndarray) -> np.ndarray:
        return session.run(None, {self._input: arr})[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if len(arr) == 1 or self.threads == 1:
            if self._wide is None:
                self._wide = self._session(self.threads)
            return torch.from_numpy(self._run(self._wide, arr))
        from concurrent.futures import ThreadPoolExecutor

        parts = [np.ascontiguousarray(p) for p in np.array_split(arr, min(len(arr), self.threads))]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="mednet-pvs-ort") as pool:
            outs = list(pool.map(lambda p: self._run(self.session, p), parts))
        return torch.from_numpy(np.concatenate(outs))

    def __repr__(self) -> str:
        return f"OnnxRuntimeNetwork({self.path.name!r}, threads={self.threads})"


class OpenVinoNetwork:
    """The same exported graph compiled by OpenVINO's CPU plugin; called like :class:`OnnxRuntimeNetwork`.

    ``precision="fp32"`` sets ``INFERENCE_PRECISION_HINT`` to f32 explicitly: on a CPU with native
    bf16 the plugin's default is bf16 (issue 19's trial: logits 0.067 apart). ``"bf16"`` asks for
    it, and only where the plugin reports BF16 among the CPU's capabilities. Compiled blobs are
    cached by OpenVINO itself (``CACHE_DIR``: ``<cache>/openvino``).

    Measured (``benchmarks/openvino_trial.py``, ``benchmarks/results/openvino_trial_cpu2.txt``; 2-core
    Xeon with AVX-512 and AMX, batch 2 x 64^3, CPU s, medians of 3 interleaved rounds; ONNX Runtime
    with intra-op threads): ResEnc-M ONNX Runtime 8.14, OpenVINO f32 4.40, bf16 0.77 (max |dp| 1.3e-2
    against torch fp32, arg-max different in 0.35 % of voxels of the random-weights net); bundled S
    k3 1.59 / 0.86 / 1.10; L k5 16.4 / 18.9 / 13.0. On the AMD EPYC (AVX2) of earlier sessions f32 was
    no faster than ONNX Runtime (above).

    Args:
        path: the ``.onnx`` file (the one :func:`compile_onnxruntime` caches).
        threads: inference threads. precision: ``"fp32"`` or ``"bf16"``. cache: folder for OpenVINO's blobs.
    """

    def __init__(self, path: Path, threads: int, precision: str = "fp32", cache: Path | None = None) -> None:
        ov = _require_openvino()
        self.path, self.threads, self.precision = Path(path), max(1, int(threads)), check_precision(precision, "openvino")
        core = ov.Core()
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ConfigError("--precision bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); OpenVINO reports none here")
        config = {"INFERENCE_PRECISION_HINT": "f32" if self.precision == "fp32" else "bf16",
                  "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"}
        if cache is not None:
            config["CACHE_DIR"] = str(Path(cache) / "openvino")
        try:
            self.compiled = core.compile_model(str(self.path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO's own errors run to many lines
            reason = " ".join(str(exc).split())[:300]
            raise ConfigError(f"--backend openvino could not compile {self.path.name} ({reason})") from None
        self.request = self.compiled.create_infer_request()

    @property
    def preferred_batch(self) -> int:
        return self.threads

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        self.request.infer({0: arr})
        return torch.from_numpy(np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True))

    def __repr__(self) -> str:
        return f"OpenVinoNetwork({self.path.name!r}, threads={self.threads}, precision={self.precision!r})"


def _require_cxx() -> str:
    """The C++ compiler AOTInductor will use; one line where there is none."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        return str(get_cpp_compiler())
    except Exception:  # noqa: BLE001 - InvalidCxxCompiler and friends
        raise ConfigError("--backend inductor needs a C++ compiler (g++ or clang++ on PATH, or $CXX); none was found") from None


class InductorNetwork:
    """A network compiled ahead of time by PyTorch's own compiler (AOTInductor, a ``.pt2`` package
    holding a shared library and the frozen weights); called like :class:`OnnxRuntimeNetwork`.

    The package is built for one batch size: a smaller batch is padded with zero tiles (their
    outputs dropped), a larger one run in parts. A dynamic batch was measured slower and wrong
    (torch 2.13, MedNeXt-L k5 exported with ``Dim("batch", min=1)``: batch 2 took 11.8-12.1 CPU s
    against 6.6 static in the same trial (9-11 s in later processes: the static package's time
    varies with glibc's page faults, :mod:`~mednet_pvs.inference.cpu_memory`), and batch 1 gave
    logits 3.4 away from eager), so it is not used.

    The package does not check its input's shape (another batch size crashed the process with a
    segmentation fault, torch 2.13), so every call is checked here first.

    Args:
        path: the ``.pt2`` package (the one :func:`compile_inductor` caches).
        batch: the batch size it was built for. threads: the threads it was built for (its
            OpenMP loops are compiled with this count; the library calls inside use it too).
        sample_shape: (C, X, Y, Z) of one input tile, the shape it was built for.
    """

    def __init__(self, path: Path, batch: int, threads: int, sample_shape: Sequence[int]) -> None:
        self.path, self.batch, self.threads = Path(path), int(batch), max(1, int(threads))
        self.sample_shape = tuple(int(v) for v in sample_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.module = torch._inductor.aoti_load_package(str(self.path))

    @property
    def preferred_batch(self) -> int:
        return self.batch

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or tuple(x.shape[1:]) != self.sample_shape:
            raise ConfigError(f"--backend inductor: {self.path.name} was compiled for tiles of shape "
                              f"{list(self.sample_shape)} (C, X, Y, Z), not {list(x.shape[1:])}")
        x = x.detach().to("cpu", torch.float32).contiguous()
        outs = []
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                for start in range(0, len(x), self.batch):
                    part = x[start:start + self.batch]
                    n = len(part)
                    if n < self.batch:  # the last, smaller batch of a volume: zero tiles fill it
                        part = torch.cat([part, part.new_zeros((self.batch - n, *part.shape[1:]))])
                    out = self.module(part)
                    outs.append((out[0] if isinstance(out, (list, tuple)) else out)[:n])
        finally:
            torch.set_num_threads(before)
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def __repr__(self) -> str:
        return f"InductorNetwork({self.path.name!r}, batch={self.batch}, threads={self.threads})"


def inductor_key(weights_sha256: str, net: nn.Module, channels: int, patch: Sequence[int], batch: int,
                 threads: int) -> dict[str, Any]:
    """What decides an AOTInductor package: the weights, input channels, tile, batch, threads,
    network code, torch version and the CPU's instruction set (the library is native code for it)."""
    import platform

    return {"format": "aoti", "weights_sha256": weights_sha256, "in_channels": int(channels),
            "patch_size": [int(p) for p in patch], "batch": int(batch), "threads": int(threads),
            "network_source_sha256": _source_digest(net), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine()}


def export_inductor(net: nn.Module, channels: int, patch: Sequence[int], batch: int, threads: int, path: Path) -> float:
    """Compile ``net`` (CPU, fp32, eval) with AOTInductor for (``batch``, ``channels``, *``patch``)
    inputs, weights frozen into the package (``freezing``: the convolutions' weights pre-packed for
    oneDNN, the normalisations and activations fused), to ``path`` atomically; returns the seconds.

    Raises:
        ConfigError: no C++ compiler, or the network cannot be exported or compiled (one line).
    """
    _require_cxx()
    wrapped = _FirstOutput(net).eval()
    x = torch.zeros((int(batch), int(channels), *[int(p) for p in patch]), dtype=torch.float32)
    t0 = time.perf_counter()
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        # no_grad matters: inductor freezes the weights (and pre-packs them) only with grad off; without
        # it the package ran MedNeXt-L k5 no faster than eager (21.7 vs 22.5 eager, 6.6 frozen, CPU s per
        # batch of 2 x 64^3, one trial)
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.export.export(wrapped, (x,))
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs={"freezing": True})
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - export and C++ compilation fail in many ways: one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--backend inductor: {type(net).__name__} cannot be compiled ({reason[:300]})") from None
    finally:
        torch.set_num_threads(before)
    return time.perf_counter() - t0


def compile_inductor(net: nn.Module, weights_sha256: str, channels: int, patch: Sequence[int], *, batch: int = 2,
                     threads: int | None = None, cache: Path | None = None) -> tuple[InductorNetwork, dict[str, Any]]:
    """``net`` as an :class:`InductorNetwork`, compiled once and then loaded from the cache;
    returns it and ``{"cached", "convert_s", "load_s", "file"}`` like :func:`compile_onnxruntime`."""
    threads = int(threads) if threads else physical_cores()
    if threads < 1 or int(batch) < 1:
        raise ConfigError(f"backend threads and batch must be >= 1, not {threads} and {batch}")
    folder = Path(cache) if cache is not None else cache_dir()
    key = inductor_key(weights_sha256, net, channels, patch, batch, threads)
    path = folder / f"{_key_name(key)}.pt2"
    return _load_or_build(path, key, net, lambda: export_inductor(net, channels, patch, batch, threads, path),
                          lambda: InductorNetwork(path, batch, threads, (channels, *patch)))


@dataclass
class BackendBuild:
    """What building a backend did: per member whether the cache held it and how long it took.

    Attributes:
        backend: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"inductor"``.
        threads: intra-op threads of the compiled sessions (``None`` for torch).
        precision: ``"fp32"``, or ``"bf16"`` (openvino only).
        convert_s: seconds spent exporting (0 when every member came from the cache).
        load_s: seconds spent building the runtime sessions.
        cached: per member, whether its compiled file was already in the cache.
        files: the compiled files.
    """

    backend: str
    threads: int | None = None
    precision: str = "fp32"
    convert_s: float = 0.0
    load_s: float = 0.0
    cached: list[bool] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "threads": self.threads, "precision": self.precision, "convert_s": round(self.convert_s, 3),
                "load_s": round(self.load_s, 3), "cached": list(self.cached), "files": list(self.files)}


def _source_digest(net: nn.Module) -> str:
    """sha256 of the source files defining the network's classes (a code change invalidates the cache)."""
    h = hashlib.sha256()
    for path in sorted({inspect.getsourcefile(type(m)) or "" for m in net.modules()}):
        if path and "site-packages/torch" not in path.replace(os.sep, "/"):
            with contextlib.suppress(OSError):
                h.update(Path(path).read_bytes())
    return h.hexdigest()


def cache_key(weights_sha256: str, net: nn.Module, channels: int, patch: Sequence[int]) -> dict[str, Any]:
    """What decides a compiled file: the weights, input channels, tile, network code and versions."""
    from importlib.metadata import version

    return {"format": "onnx", "weights_sha256": weights_sha256, "in_channels": int(channels),
            "patch_size": [int(p) for p in patch], "network_source_sha256": _source_digest(net),
            "torch": torch.__version__, **{name: version(name) for name in _ONNX_PACKAGES}, "opset": OPSET,
            "graph_rewrites": GRAPH_REWRITES}


def _key_name(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def export_onnx(net: nn.Module, channels: int, patch: Sequence[int], path: Path) -> float:
    """Export ``net`` (CPU, fp32, eval) for (B, ``channels``, *``patch``) inputs, batch dynamic, to
    ``path`` atomically; returns the seconds it took.

    Raises:
        ConfigError: the network cannot be exported (one line with the exporter's reason).
    """
    _require_onnx()
    wrapped = _FirstOutput(net).eval()
    x = torch.zeros((2, int(channels), *[int(p) for p in patch]), dtype=torch.float32)
    t0 = time.perf_counter()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" etc.
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (x,), str(tmp), dynamo=True, opset_version=OPSET, input_names=["x"],
                              output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
                              external_data=False, verbose=False)
            import onnx

            graph = onnx.load(str(tmp))
            rewrite(graph)  # GELU fused, GroupNorm(C, C) folded, k>=5 depthwise split: what ONNX Runtime's optimiser misses
            onnx.save(graph, str(tmp))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the exporter's many failure types: one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--backend onnxruntime: {type(net).__name__} cannot be exported to ONNX ({reason[:300]})") from None
    finally:
        onnx_logger.setLevel(level)
    return time.perf_counter() - t0


def compile_onnxruntime(net: nn.Module, weights_sha256: str, channels: int, patch: Sequence[int], *,
                        threads: int | None = None, cache: Path | None = None) -> tuple[OnnxRuntimeNetwork, dict[str, Any]]:
    """``net`` as an :class:`OnnxRuntimeNetwork`, exported once and then loaded from the cache.

    Args:
        net: the network (on the CPU, eval mode, fp32 weights).
        weights_sha256: digest of ``net``'s weights (part of the cache key).
        channels: input channels; patch: tile size (X, Y, Z) in voxels.
        threads: intra-op threads (default: :func:`physical_cores`).
        cache: the cache folder (default :func:`cache_dir`).

    Returns:
        The callable and ``{"cached", "convert_s", "load_s", "file"}``.
    """
    _require_onnx()
    threads = int(threads) if threads else physical_cores()
    if threads < 1:
        raise ConfigError(f"backend threads must be >= 1, not {threads}")
    folder = Path(cache) if cache is not None else cache_dir()
    key = cache_key(weights_sha256, net, channels, patch)
    path = folder / f"{_key_name(key)}.onnx"
    return _load_or_build(path, key, net, lambda: export_onnx(net, channels, patch, path),
                          lambda: OnnxRuntimeNetwork(path, threads))


def _load_or_build(path: Path, key: dict[str, Any], net: nn.Module, build: Any, load: Any) -> tuple[Any, dict[str, Any]]:
    """``load()`` the compiled file at ``path``, ``build()``-ing it first (and its ``.json`` record of
    ``key``) where the cache lacks it; a cached file that fails to load is built again, once."""
    cached, convert_s = path.is_file(), 0.0
    if not cached:
        convert_s = build()
        write_json({**key, "network": type(net).__name__, "export_seconds": round(convert_s, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, path.with_suffix(".json"))
    t0 = time.perf_counter()
    try:
        runner = load()
    except ConfigError:
        raise
    except Exception:
        if not cached:
            raise
        path.unlink(missing_ok=True)  # a damaged cache entry: build again, once
        convert_s, cached = build(), False
        t0 = time.perf_counter()
        runner = load()
    return runner, {"cached": cached, "convert_s": convert_s, "load_s": time.perf_counter() - t0, "file": str(path)}


def build_backend(name: str, networks: Sequence[nn.Module], weights_sha256: Sequence[str], channels: int,
                  patch: Sequence[int], *, threads: int | None = None, cache: Path | None = None,
                  precision: str = "fp32", batch: int | None = None) -> tuple[list[Any] | None, BackendBuild]:
    """The callables for backend ``name`` (already resolved: ``torch``, ``onnxruntime``,
    ``openvino`` or ``inductor``), one per member (``None`` for torch: the networks themselves run),
    and what building them did. ``openvino`` compiles the graph ``onnxruntime`` exports and caches;
    ``inductor`` builds its own package for ``batch`` tiles per call (default: ``threads``)."""
    precision = check_precision(precision, name)
    if name == "torch":
        return None, BackendBuild("torch")
    if name == "openvino":
        _require_openvino()
    if name == "inductor":
        _require_cxx()
    build = BackendBuild(name, threads=int(threads) if threads else physical_cores(), precision=precision)
    runners = []
    for net, digest in zip(networks, weights_sha256):
        if name == "inductor":
            runner, done = compile_inductor(net, digest, channels, patch, batch=batch or build.threads,
                                            threads=build.threads, cache=cache)
        else:
            runner, done = compile_onnxruntime(net, digest, channels, patch, threads=build.threads, cache=cache)
        if name == "openvino":
            t0 = time.perf_counter()
            runner = OpenVinoNetwork(runner.path, build.threads, precision, cache=Path(cache) if cache is not None else cache_dir())
            done["load_s"] += time.perf_counter() - t0
        runners.append(runner)
        build.convert_s += done["convert_s"]
        build.load_s += done["load_s"]
        build.cached.append(done["cached"])
        build.files.append(done["file"])
    return runners, build


def apply_backend(model: Any, name: str, *, threads: int | None = None, precision: str = "fp32") -> Any:
    """``model.use_backend(name)`` for models that have networks; ``torch``/``auto`` leave any other
    model (Frangi) as it is. Returns the model.

    Raises:
        ConfigError: an unknown name or precision, or a compiled backend for a model without networks.
    """
    key = check_backend(name)
    if hasattr(model, "use_backend"):
        return model.use_backend(key, threads=threads, precision=precision)
    if key in CPU_BACKENDS:
        raise ConfigError(f"--backend {key} is for network models; {getattr(model, 'name', type(model).__name__)} runs only as it is")
    check_precision(precision, "torch")
    return model
