"""Stand-in for SimpleITK on the GPU machine (see benchmarks/gpu_kit.sh): importable, with any
attribute (TorchIO reads constants and writes ``X | sitk.Image`` in annotations at import), but
using one (calling it, or reading further into it) raises instead of computing."""
from __future__ import annotations

MESSAGE = "this machine has only SimpleITK's stand-in (benchmarks/gpu_kit.sh): carry the real wheel for this job"


class _Meta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"SimpleITK.{cls.__name__}.{name}: {MESSAGE}")

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"SimpleITK.{cls.__name__}(): {MESSAGE}")


__version__ = "0.0+stand-in"
_made: dict[str, type] = {}


def __getattr__(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _made:  # a class: usable in annotations and as a dict key, never as SimpleITK
        _made[name] = _Meta(name, (), {"__module__": "SimpleITK"})
    return _made[name]
