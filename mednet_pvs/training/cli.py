"""LightningCLI for PVS training: ``mednet-pvs fit|validate|test --config <yaml or shipped name> ...``.

Everything in a config (or on the command line) goes to :class:`PVSSegmenter`
(``--model.*``), :class:`~mednet_pvs.data.PVSDataModule` (``--data.*``: the
arguments of :class:`~mednet_pvs.data.PVSDataModule`) and the Lightning
``Trainer`` (``--trainer.*``). Added here:

* ``--config NAME``: a shipped config by name (``tiny_synthetic``, ``mednext_l_k5_t2w``...:
  :func:`list_configs`) or any YAML path.
* ``--logger wandb|csv|tensorboard|none`` (default ``wandb``, project ``--project``; offline
  unless ``WANDB_API_KEY`` is set, so nothing leaves an air-gapped site; ``csv`` needs nothing).
  An explicit ``--trainer.logger`` wins.
* checkpoints in ``<trainer.default_root_dir>/checkpoints/``: the best by ``val/dice``
  (``best-<epoch>-<step>.ckpt``) and ``last.ckpt`` (every ``--checkpoint_every_n_steps`` optimiser
  steps, else every epoch, and when ``fit`` stops), so an interrupted run resumes with ``--ckpt_path last``;
  a resumed run that trains no step says why in one line (:class:`ResumeCheck`).
* ``--export.folder`` (default ``<default_root_dir>/model``): the best checkpoint exported as a
  model bundle when ``fit`` ends (:class:`~mednet_pvs.training.export.BundleExport`).
* ``--data.source.KEY VALUE`` on a synthetic source (``--data.source.noise 0.1``): the value is
  read as a YAML scalar, as in a config file (:func:`typed_source`).
* precision: ``bf16-mixed`` on a GPU that supports it unless ``--trainer.precision`` is given.
"""
from __future__ import annotations

import os
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional

from lightning.pytorch.callbacks import Callback, ModelCheckpoint, Timer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.data import PVSDataModule
from mednet_pvs.training.export import BundleExport
from mednet_pvs.training.module import PVSSegmenter

LoggerName = Literal["wandb", "csv", "tensorboard", "none"]
PROJECT = "mednet-pvs"


def list_configs() -> list[str]:
    """Names of the configs shipped in ``mednet_pvs/configs/`` (without ``.yaml``)."""
    folder = resources.files("mednet_pvs") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def config_path(name: str) -> Path:
    """The file of a shipped config (``"tiny_synthetic"`` or ``"tiny_synthetic.yaml"``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in list_configs():
        raise ConfigError(f"no shipped config named {name!r}; shipped: {', '.join(list_configs())} (or give a YAML path)")
    return Path(str(resources.files("mednet_pvs") / "configs" / f"{stem}.yaml"))


def resolve_config_args(args: list[str]) -> list[str]:
    """Replace ``--config NAME`` (a shipped config's name, not an existing file) by its path."""
    out = list(args)
    for i, a in enumerate(out):
        key, eq, value = a.partition("=")
        if key not in ("--config", "-c"):
            continue
        if not eq:
            if i + 1 >= len(out):
                continue
            value = out[i + 1]
        if Path(value).exists() or (os.sep in value) or ("\n" in value) or (":" in value):
            continue
        resolved = str(config_path(value))
        if eq:
            out[i] = f"{key}={resolved}"
        else:
            out[i + 1] = resolved
    return out


def make_logger(kind: str, root: str | Path, project: str = PROJECT) -> Any:
    """A Lightning logger writing under ``root``: wandb (offline without WANDB_API_KEY), csv, tensorboard or none."""
    from lightning.pytorch import loggers

    root = Path(root)
    if kind == "wandb":
        try:
            import wandb  # noqa: F401 - an extra: say how to get it before Lightning fails deep inside
        except ImportError:
            raise ConfigError("--logger wandb needs the wandb extra: pip install 'mednet-pvs[wandb]' (or use --logger csv)") from None
        offline = not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") != "online"
        root.mkdir(parents=True, exist_ok=True)
        return loggers.WandbLogger(project=project, save_dir=str(root), offline=offline)
    if kind == "csv":
        return loggers.CSVLogger(save_dir=str(root), name="logs")
    if kind == "tensorboard":
        try:
            return loggers.TensorBoardLogger(save_dir=str(root), name="logs")
        except ModuleNotFoundError as e:
            raise ConfigError(f"--logger tensorboard needs tensorboard installed ({e}); use --logger csv") from None
    if kind == "none":
        return False
    raise ConfigError(f"--logger must be wandb, csv, tensorboard or none, not {kind!r}")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: every N optimiser steps (or every epoch), and once more when ``fit`` stops.

    Lightning saves a step-triggered checkpoint only at multiples of N, so a run stopped by
    ``--trainer.max_time`` (a GPU lease, a cluster job's limit), ``max_steps`` or early stopping lost
    up to N - 1 steps (the H200 stage of ``mednet-pvs-synth-any`` stopped at step 1,632 and resumed
    from 1,500). Resuming from the final one continues from the step where ``fit`` stopped; give the
    resumed run a later ``max_steps`` or ``max_time`` and ``max_epochs -1`` (the final save may close
    the epoch).
    """

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):  # skipped when this step is already saved
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


class ResumeCheck(Callback):
    """One line on stderr when a resumed ``fit`` trains no step, with the reason.

    Lightning stops such a run without a word on why: a checkpoint written when
    ``--trainer.max_time`` stopped ``fit`` has spent that time and closed its epoch, so the same
    command with ``--ckpt_path last`` ends at once (it happened to the CPU stage 8 of
    ``mednet-pvs-synth-any``: "max_epochs=1 reached" at step 785 of 1,400).
    """

    _resumed_at: int | None = None

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._resumed_at = int(checkpoint.get("global_step", -1))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:  # the fit loop skips on_train_* when already done
        if self._resumed_at is None or trainer.global_step > self._resumed_at or not trainer.is_global_zero:
            return
        reasons = []
        if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
            reasons.append(f"--trainer.max_steps {trainer.max_steps} was already reached")
        if trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs:
            reasons.append(f"--trainer.max_epochs {trainer.max_epochs} was already reached (the save when fit "
                           "stops closes the epoch): give --trainer.max_epochs -1")
        for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
            if timer.time_remaining("train") is not None and timer.time_remaining("train") <= 0:
                reasons.append(f"the checkpoint had already spent --trainer.max_time ({timer.time_elapsed('train'):.0f} s "
                               f"of {timer._duration:.0f} s; the limit counts the time before the save): give a later one")
        why = "; ".join(reasons) or "the stopping conditions were already met"
        print(f"mednet-pvs fit: resumed from {trainer.ckpt_path} at step {trainer.global_step} and trained no step: {why}",
              file=sys.stderr)


def checkpoint_callbacks(root: str | Path, every_n_steps: int | None = None) -> list[ModelCheckpoint]:
    """The best checkpoint by ``val/dice`` and ``last.ckpt`` (:class:`LastCheckpoint`).

    ``last.ckpt`` is the single "top-1 without a monitor" file of its own callback, not
    ``save_last=True`` of a ``save_top_k=0`` callback: Lightning (2.6) writes ``last`` only in a
    step where that same callback saved something, i.e. never for ``save_top_k=0``.
    """
    folder = str(Path(root) / "checkpoints")
    best = ModelCheckpoint(dirpath=folder, filename="best-{epoch:04d}-{step}", monitor="val/dice", mode="max",
                           save_top_k=1, auto_insert_metric_name=False)
    last = LastCheckpoint(dirpath=folder, filename=ModelCheckpoint.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1,
                          enable_version_counter=False, every_n_train_steps=every_n_steps or None,
                          save_on_train_epoch_end=True)
    return [best, last]


def default_precision(accelerator: Any) -> str | None:
    """``"bf16-mixed"`` where a CUDA GPU supporting bf16 will be used, else ``None`` (Lightning's default)."""
    import torch

    if str(accelerator) in ("cpu", "mps") or not torch.cuda.is_available():
        return None
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


#: ``--ckpt_path`` values that Lightning resolves itself rather than reading a file of that name.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")


def ckpt_path_args(args: list[str]) -> list[str]:
    """The values given to ``--ckpt_path`` in ``args`` (``--ckpt_path FILE`` and ``--ckpt_path=FILE``)."""
    out = []
    for i, a in enumerate(args):
        if a == "--ckpt_path" and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith("--ckpt_path="):
            out.append(a.partition("=")[2])
    return out


def check_checkpoint(value: str | os.PathLike | None) -> None:
    """Check a ``ckpt_path`` before Lightning unpickles it: the file exists, is read by the one safe
    reader (:func:`mednet_pvs.safe_load.torch_load`, ``weights_only=True``: nothing in it can run
    code) and is a Lightning checkpoint (a dict with a ``state_dict``); else an InputError naming it.

    Names that Lightning resolves itself (``last``, ``best``, ``hpc``, ``registry[:...]``), remote
    URLs (``s3://...``, read by Lightning with ``weights_only=True``) and ``None``/``null`` pass.
    """
    from mednet_pvs.safe_load import torch_load

    if value is None:
        return
    text = str(value)
    if text in ("", "null", "None") or text in LIGHTNING_CKPT_NAMES or text.startswith("registry:") or "://" in text:
        return
    path = Path(text)
    if not path.is_file():
        raise InputError(path, "checkpoint not found (--ckpt_path)" if not path.exists() else "not a file (--ckpt_path wants a checkpoint)")
    ckpt = torch_load(path)  # an InputError naming the file: not a torch file, or one that could run code
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(path, "not a Lightning checkpoint (no 'state_dict'): give a .ckpt that fit wrote "
                               "(<default_root_dir>/checkpoints/), or 'last' / 'best'")


def typed_source(source: Any) -> Any:
    """A mapping ``data.source`` with its string values read as YAML numbers, booleans, lists or
    null where they are one. jsonargparse cannot type the keys of a free mapping, so
    ``--data.source.noise 0.1`` arrived as the string ``"0.1"`` and the generator's config
    refused it ("noise must be a number, not '0.1'"); other strings stay as they are."""
    import yaml

    if not isinstance(source, dict):
        return source
    out = {}
    for key, value in source.items():
        if isinstance(value, str):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value
            if parsed is None or isinstance(parsed, (bool, int, float, list)):
                value = parsed
        out[key] = value
    return out


class PVSLightningCLI(LightningCLI):
    """LightningCLI with the logger choice, checkpoints, bundle export and precision default above;
    a ``ckpt_path`` that came from a config file is checked (:func:`check_checkpoint`) as soon as
    the arguments are parsed, before Lightning reads its hyperparameters (those on the command line
    were already checked by :func:`run_cli`)."""

    def __init__(self, *args: Any, checked_ckpt_paths: tuple[str, ...] = (), **kwargs: Any) -> None:
        self._checked_ckpt_paths = set(checked_ckpt_paths)
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        data = self.config[subcommand]["data"] if subcommand else self.config.get("data")
        if data is not None and isinstance(data.get("source"), dict):
            data["source"] = typed_source(data["source"])
        value = self.config[subcommand].get("ckpt_path") if subcommand else None
        if value is not None and str(value) not in self._checked_ckpt_paths:
            check_checkpoint(value)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--logger", type=LoggerName, default="wandb",
                            help="Logger when --trainer.logger is not given: wandb (offline without WANDB_API_KEY), csv, tensorboard or none.")
        parser.add_argument("--project", type=str, default=PROJECT, help="wandb project name.")
        parser.add_argument("--checkpoint_every_n_steps", type=Optional[int], default=None,
                            help="Write last.ckpt every N optimiser steps (default: every epoch).")
        parser.add_lightning_class_args(BundleExport, "export")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_cfg = cfg["trainer"]
        root = trainer_cfg.get("default_root_dir") or os.getcwd()
        if trainer_cfg.get("logger") is None and "logger" not in kwargs:
            kwargs["logger"] = make_logger(cfg["logger"], root, cfg["project"])
        if trainer_cfg.get("precision") is None and "precision" not in kwargs:
            precision = default_precision(trainer_cfg.get("accelerator"))
            if precision:
                kwargs["precision"] = precision
        callbacks = list(trainer_cfg.get("callbacks") or [])
        kwargs["callbacks"] = [*callbacks, *checkpoint_callbacks(root, cfg["checkpoint_every_n_steps"]), ResumeCheck(),
                               *kwargs.get("callbacks", [])]
        return super().instantiate_trainer(**kwargs)


def run_cli(args: list[str], **cli_kwargs: Any) -> PVSLightningCLI:
    """Run ``fit``/``validate``/``test`` (first element of ``args``) as the command line would.

    Every ``--ckpt_path FILE`` is checked first (:func:`check_checkpoint`): a missing file, a file
    that is not a checkpoint or one that could run code is an InputError naming it, before
    Lightning (or any model or data) is set up.
    """
    checked = ckpt_path_args(args)
    for value in checked:
        check_checkpoint(value)
    kw: dict[str, Any] = dict(
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
    )
    kw.update(cli_kwargs)
    with warnings.catch_warnings():  # the console script passes sys.argv on as ``args``: not a mistake
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        # PreprocessConfig's tuples come back as lists from YAML; its __post_init__ makes them tuples again
        warnings.filterwarnings("ignore", message=r"(?s).*Dump of a value that does not round-trip: a tuple")
        return PVSLightningCLI(PVSSegmenter, PVSDataModule, args=resolve_config_args(args), checked_ckpt_paths=tuple(checked), **kw)
