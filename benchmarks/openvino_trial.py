#!/usr/bin/env python3
"""OpenVINO (fp32 and bf16) against ONNX Runtime on the project's own exported graphs: a trial, not
a backend. Two steps, two environments:

    .venv/bin/python benchmarks/openvino_trial.py export DIR        # the project: ONNX files + torch reference
    python -m venv /tmp/ov && /tmp/ov/bin/pip install openvino onnxruntime==1.32.0 numpy
    /tmp/ov/bin/python benchmarks/openvino_trial.py measure DIR     # throwaway venv: no project import

``export`` writes, for the bundled MedNeXt-S k3 (trained), MedNeXt-L k5 and nnU-Net ResEnc-M
(seeded random weights), the graph ``--backend onnxruntime`` runs (fp32, rewritten, cached form),
one batch of 2 x 64^3 (seeded normal noise) and PyTorch's fp32 logits for it (channels-first).
``measure`` times, on the threads given (default 2), ONNX Runtime as the backend configures it
(one session, intra-op threads) and OpenVINO's CPU plugin with ``INFERENCE_PRECISION_HINT`` f32
and bf16 (``PERFORMANCE_HINT`` LATENCY), interleaved over ``--rounds``; CPU seconds per batch and
agreement with PyTorch (max |softmax difference|, share of voxels whose arg-max differs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

NETS = ("s_k3", "l_k5", "resenc_m")


def export(folder: Path) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import bench_cpu_backends as b
    from mednet_pvs.zoo import load_pretrained

    folder.mkdir(parents=True, exist_ok=True)
    bundled = load_pretrained("mednet-pvs-synth-t2w", device="cpu")
    x = torch.randn(2, 1, *b.PATCH, generator=torch.Generator().manual_seed(0))
    np.save(folder / "x.npy", x.numpy())
    for name in NETS:
        net = b.build(name, bundled)
        runner, _ = b.compile_onnxruntime(net, b.tensor_digest(net.state_dict()), 1, b.PATCH, cache=folder / "cache")
        with torch.no_grad():
            y = net(x)
        y = y[0] if isinstance(y, (list, tuple)) else y
        np.save(folder / f"ref_{name}.npy", y.numpy())
        (folder / f"{name}.onnx.path").write_text(str(runner.path))
        print(name, runner.path, flush=True)


def measure(folder: Path, threads: int, rounds: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import openvino as ov

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    core = ov.Core()
    x = np.load(folder / "x.npy")
    lines = [f"{platform.processor() or platform.machine()}, CPU flags: "
             + " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in open("/proc/cpuinfo").read())
             + f"; openvino {ov.__version__}, onnxruntime {ort.__version__}, {threads} threads, {rounds} interleaved rounds, batch 2 x 64^3"]
    results = {}
    for name in NETS:
        path = (folder / f"{name}.onnx.path").read_text()
        ref = np.load(folder / f"ref_{name}.npy")
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0].name
        runs = {"onnxruntime fp32": lambda s=sess, i=inp: s.run(None, {i: x})[0]}
        for prec in ("f32", "bf16"):
            t0 = time.perf_counter()
            req = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": threads,
                                                   "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
            compile_s = time.perf_counter() - t0
            runs[f"openvino {prec} (compile {compile_s:.1f} s)"] = lambda r=req: (r.infer({0: x}), r.get_output_tensor(0).data.copy())[1]
        outs = {k: f() for k, f in runs.items()}  # warm-up, and the outputs compared
        times: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(rounds):
            order = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
            for k in order:
                c = time.process_time()
                runs[k]()
                times[k].append(time.process_time() - c)
        lines.append(f"[{name}]")
        for k in runs:
            dp = float(np.abs(softmax(outs[k]) - softmax(ref)).max())
            lab = float((outs[k].argmax(1) != ref.argmax(1)).mean())
            med = float(np.median(times[k]))
            lines.append(f"  {k:32s} CPU s per batch: median {med:.2f} ({', '.join(f'{t:.2f}' for t in times[k])}); "
                         f"vs torch fp32: max |dp| {dp:.2e}, arg-max differs in {100 * lab:.3f} % of voxels")
            results[f"{name} {k}"] = {"cpu_s": times[k], "max_dp": dp, "labels_differ": lab}
    print("\n".join(lines))
    (folder / "openvino_trial.txt").write_text("\n".join(lines) + "\n")
    (folder / "openvino_trial.json").write_text(json.dumps(results, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("export", "measure"))
    ap.add_argument("folder", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.step == "export":
        export(args.folder)
    else:
        measure(args.folder, args.threads, args.rounds)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
