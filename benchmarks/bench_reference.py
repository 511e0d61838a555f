"""One training iteration of the Improved Contrastive Divergence reference code, timed.

Times one iteration of the training loop of the reference implementation
(github.com/yilundu/improved_contrastive_divergence, ``train.py``; commit 7d3d4ee read), in its
CIFAR-10 configuration, so that ebmkit's iteration can be put beside it. The reference is not
vendored here: it is imported from a scratch checkout outside this repository.

Obtaining the checkout (either of these; nothing is copied into ebmkit)::

    git clone https://github.com/yilundu/improved_contrastive_divergence /tmp/refbench/improved_cd

or, from a bare mirror of that repository at ``$MIRROR`` (e.g. what a ``fetch`` of
``github:yilundu/improved_contrastive_divergence`` leaves under ``/work/.mirror/``)::

    mkdir -p /tmp/refbench/improved_cd
    git --git-dir="$MIRROR" archive HEAD | tar -x -C /tmp/refbench/improved_cd

Running::

    .venv/bin/python benchmarks/bench_reference.py --reference /tmp/refbench/improved_cd \
        [--batch 16] [--steps 10] [--rounds 5] [--device cpu] [--threads 2]

Configuration: every flag keeps the default that the reference's own ``flags.DEFINE_*`` calls in
``train.py`` give it, which is exactly the README's CIFAR-10 command (``--step_lr=100.0
--num_steps=40 --ensembles=1 --kl_coeff=1.0 --kl=True --multiscale --self_attn``; dataset
cifar10, filter_dim 64, reservoir buffer of 10 000 with augmentation, repel_im on, Adam lr 2e-4),
except ``batch_size`` (``--batch``), ``num_steps`` (``--steps``) and ``cuda`` (from ``--device``).

What is the reference's own code and what is glue
-------------------------------------------------
``train.py`` itself is imported (with the stubs below), and so are ``models.py``, ``utils.py``
and ``downsample.py`` through its imports. Called from the reference:

* ``models.ResNetModel`` (built with the reference's flag dict; 6.64 M parameters) and its
  ``forward`` for the positive, negative and KL energies;
* ``train.gen_image`` for the K Langevin steps, including the last step redone on ``im_neg_kl``
  with ``create_graph=True``;
* ``utils.ReservoirBuffer`` (``sample`` with its CIFAR-10 augmentation: RandomResizedCrop(32,
  0.08-1), flip, colour jitter s=1, grayscale; ``add``), for the chain initialisation and for the
  100 comparison images of the entropy term;
* ``train.compress_x_mod`` / ``train.decompress_x_mod``;
* ``train.ema_model`` (mu 0.99, and mu 0.0 once at set-up as in ``main_single``);
* ``clip_grad_norm`` as ``train.py`` imports it (``torch.nn.utils.clip_grad_norm``);
* the flag dict is built as ``train.main`` builds it, into ``train.EasyDict``.

``train.train()`` itself cannot be called to run one iteration, for these reasons:

1. it hard-codes CUDA: ``torch.cuda.set_device(rank_idx)`` (L314), ``label.float().cuda(rank_idx)``
   (L341), ``data.cuda`` / ``data_corrupt.cuda`` (L379-380), ``.cuda(rank_idx)`` on the replay
   batch (L390) and on the entropy comparison batch (L436), so it cannot run on the CPU;
2. it builds its replay buffer locally on every call (L316-320), so each call would start with an
   empty buffer: no chain initialisation from the buffer, no augmentation and no entropy term
   (that term needs more than 1000 buffered samples), i.e. not a representative iteration;
3. it loops ``for epoch in range(FLAGS.epoch_num): for ... in dataloader``, imports the TF
   Inception graph (``from inception import get_inception_score``, L322-323) and, on
   ``itr % save_interval == 0`` iterations (including its first one), samples with
   ``sample=True``, writes checkpoints and computes an Inception score.

Glue written here, therefore: the body of that loop, L341-521, reproduced statement by statement
for one ordinary iteration (not a save iteration, not a log iteration; ``gpus=1``, ``hmc=False``,
``log_grad=False``), with ``.cuda(rank_idx)`` replaced by ``.to(device)``:
the label/data layout conversions (L341-342, L378-380); replay draw of ``batch`` augmented
samples, ``decompress_x_mod``, the 0.999 replay mask (L382-390); model choice among the ensemble
(L394-395); ``gen_image`` (L406); positive and negative forwards (L408-409); buffer ``add`` of the
new negatives (L411-412); the CD loss and the squared-energy regulariser (L414-415); the KL
forward with ``model.requires_grad_(False)`` and ``kl_coeff`` (L417-421); the entropy (repel)
term with 100 augmented buffer samples and weight 0.3, including the two ``timeit.timeit()`` calls the
reference makes there (L424, L457: each runs a million empty statements, a real per-iteration
cost of the reference, reported separately by ``main``); ``loss.backward()``;
``clip_grad_norm(..., 0.5)``; Adam step and ``zero_grad``; ``ema_model``; the two energy
sanity checks (L517-521). The set-up (not timed) is also glue, following ``main_single``:
``Adam(params, lr=FLAGS.lr, betas=(0.0, 0.9), eps=1e-8)``, the EMA copy, and a reservoir buffer
filled to its 10 000 entries (with random uint8 images, through the reference's ``add``), i.e. the
steady state of a run, so that every timed iteration initialises its chains from the buffer and
includes the entropy term. Checked once (scratch script, CPU, batch 4, 2 Langevin steps): from the
same set-up and RNG state, one call of this glue leaves the parameters, the EMA copy and the buffer
bit-identical to one call of the reference's own ``train()`` (its ``.cuda``/``set_device`` calls
made no-ops, a one-batch loader, ``resume_iter=1``, this pre-filled buffer injected).
Not timed: data loading (the DataLoader's dequantisation of real CIFAR-10; random data in [0, 1]
stands in), and the work of log iterations (every 10th:
``.item()`` calls and TensorBoard writes) and save iterations (every 1000th).

Stubs (``sys.modules`` entries, put in place only while ``train.py`` is being imported, then
removed again together with the reference's top-level modules ``train``, ``models``, ``utils``,
``downsample``, so that nothing leaks into the caller's process):

* ``tensorflow`` and ``tensorflow.python.platform.flags``, ``tensorflow.core.util.event_pb2``
  (always): ``train.py`` uses TF only for logging and flags. The ``flags`` stub records each
  ``DEFINE_*(name, default, help)`` into a dict: these recorded defaults are the configuration.
* ``logger`` (always): the reference's ``logger.py`` configures a default logger at import time,
  which prints "Logging to ..." and creates a ``/tmp/openai-<date>`` folder; ``train.py`` only
  uses its ``TensorBoardOutputFormat`` in ``main_single``, which is not run.
* ``data`` (always): the reference's ``data.py`` needs tensorflow, imageio, lmdb, skimage and
  ``scipy.misc.imread`` at import and reads data sets from cluster paths; ``train.py`` only uses
  its six dataset classes in ``main_single``, which is not run. The stub defines those names.
* only when not installed: ``easydict`` (a minimal attribute dict), ``cv2`` (used only by
  ``utils.GaussianBlur``, which the CIFAR-10 buffer transform does not include), ``IPython``
  (``downsample.py`` imports ``embed`` and never calls it), and ``scipy.misc`` when it lacks
  ``imsave`` (removed from SciPy; ``train.py`` imports it and never calls it during training).
  No horovod or mpi4py import exists in the reference's ``train.py``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import random
import statistics
import sys
import timeit
import types
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from timing import timed

# Top-level module names of the reference that an import of its train.py brings in.
_REFERENCE_MODULES = ("train", "models", "utils", "downsample", "logger", "data")


class _FlagRecorder(types.ModuleType):
    """Stand-in for ``tensorflow.python.platform.flags``: records each flag's default."""

    def __init__(self) -> None:
        super().__init__("tensorflow.python.platform.flags")
        self.__spec__ = importlib.machinery.ModuleSpec(self.__name__, None)
        self.defaults: dict[str, object] = {}
        self.FLAGS = types.SimpleNamespace()

    def _define(self, name: str, default: object, help: str = "", *args, **kwargs) -> None:  # noqa: A002
        self.defaults[name] = default
        setattr(self.FLAGS, name, default)

    DEFINE_integer = DEFINE_float = DEFINE_string = DEFINE_bool = DEFINE_boolean = _define


class _EasyDict(dict):
    """Minimal ``easydict.EasyDict``: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err

    def __setattr__(self, name, value):
        self[name] = value


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    mod.__dict__.update(attrs)
    return mod


def _unused(name: str):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"{name} is a benchmark stub; the training iteration never calls it")

    return fail


def _build_stubs() -> tuple[dict[str, types.ModuleType], _FlagRecorder]:
    flags = _FlagRecorder()
    event_pb2 = _module("tensorflow.core.util.event_pb2", Event=_unused("tensorflow Event"))
    util = _module("tensorflow.core.util", event_pb2=event_pb2)
    core = _module("tensorflow.core", util=util)
    platform = _module("tensorflow.python.platform", flags=flags)
    python = _module("tensorflow.python", platform=platform)
    tf = _module("tensorflow", python=python, core=core, Summary=_unused("tensorflow Summary"))
    stubs = {
        "tensorflow": tf,
        "tensorflow.python": python,
        "tensorflow.python.platform": platform,
        "tensorflow.python.platform.flags": flags,
        "tensorflow.core": core,
        "tensorflow.core.util": util,
        "tensorflow.core.util.event_pb2": event_pb2,
        "data": _module(
            "data",
            **{n: _unused(f"data.{n}") for n in ("Cifar10", "CelebAHQ", "Mnist", "ImageNet", "LSUNBed", "STLDataset")},
        ),
        "logger": _module("logger", TensorBoardOutputFormat=_unused("logger.TensorBoardOutputFormat")),
    }
    if _missing("easydict"):
        stubs["easydict"] = _module("easydict", EasyDict=_EasyDict)
    if _missing("cv2"):
        stubs["cv2"] = _module("cv2", GaussianBlur=_unused("cv2.GaussianBlur"))
    if _missing("IPython"):
        stubs["IPython"] = _module("IPython", embed=_unused("IPython.embed"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import scipy.misc as scipy_misc  # deprecated module; lacks imsave in current SciPy

        has_imsave = hasattr(scipy_misc, "imsave")
    except ImportError:
        has_imsave = False
    if not has_imsave:
        stubs["scipy.misc"] = _module("scipy.misc", imsave=_unused("scipy.misc.imsave"))
    return stubs, flags


def _import_reference(ref_dir: Path) -> tuple[types.ModuleType, _FlagRecorder, list[str]]:
    """Import the reference's train.py from ``ref_dir``; leave sys.modules and sys.path as found."""
    ref_dir = Path(ref_dir).resolve()
    if not (ref_dir / "train.py").is_file() or not (ref_dir / "models.py").is_file():
        raise FileNotFoundError(f"{ref_dir} is not a checkout of improved_contrastive_divergence (no train.py/models.py)")
    # Import the reference's installed dependencies first, so none of them is imported while the
    # stubs are in sys.modules (torchvision pulls in torch._dynamo, which probes tensorflow).
    for dep in ("torchvision", "torchvision.transforms", "PIL.Image", "tqdm", "matplotlib.pyplot", "torch.distributed"):
        importlib.import_module(dep)
    stubs, flags = _build_stubs()
    touched = set(stubs) | set(_REFERENCE_MODULES)
    saved = {name: sys.modules[name] for name in touched if name in sys.modules}
    sys.path.insert(0, str(ref_dir))
    try:
        for name in _REFERENCE_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(stubs)
        train = importlib.import_module("train")
    finally:
        sys.path.remove(str(ref_dir))
        for name in touched:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    stubbed = sorted({name.split(".")[0] if name.startswith("tensorflow") else name for name in stubs})
    return train, flags, stubbed


def reference_iteration(ref_dir: Path, batch: int, steps: int, device: torch.device) -> Callable[[], None]:
    """Set up the reference's CIFAR-10 training state; return a function running one iteration.

    ``ref_dir`` is a checkout of github.com/yilundu/improved_contrastive_divergence. The returned
    function runs the body of the reference's training loop once (see the module docstring for
    exactly which parts are the reference's code and which are glue); it does not synchronise
    CUDA itself. It carries attributes ``stubbed`` (stubbed module names), ``flags`` (the flag
    dict used), ``n_params`` and ``buffer``.
    """
    device = torch.device(device)
    ref, flag_recorder, stubbed = _import_reference(ref_dir)

    # The flag dict, as train.main() builds it from FLAGS (here: the recorded DEFINE_* defaults).
    FLAGS = ref.EasyDict()
    for key, value in flag_recorder.defaults.items():
        FLAGS[key] = value
    assert FLAGS.dataset == "cifar10" and not FLAGS.cond
    FLAGS.batch_size = batch
    FLAGS.num_steps = steps
    FLAGS.cuda = device.type == "cuda"

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)

    # Set-up as in main_single()/train() (glue; not timed).
    models = [ref.ResNetModel(FLAGS).train().to(device) for _ in range(FLAGS.ensembles)]
    models_ema = [ref.ResNetModel(FLAGS).train().to(device) for _ in range(FLAGS.ensembles)]
    parameters = [p for model in models for p in model.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=FLAGS.lr, betas=(0.0, 0.9), eps=1e-8)
    ref.ema_model(models, models_ema, mu=0.0)
    optimizer.zero_grad()
    assert FLAGS.replay_batch and FLAGS.reservoir and FLAGS.kl and FLAGS.repel_im
    replay_buffer = ref.ReservoirBuffer(FLAGS.buffer_size, FLAGS.transform, FLAGS.dataset)
    # Steady state: a full buffer (random images), so chains start from it and the entropy term is on.
    replay_buffer.add(ref.compress_x_mod(np.random.uniform(0.0, 1.0, (FLAGS.buffer_size, 3, 32, 32))))
    num_steps = FLAGS.num_steps
    dev = device

    # What the reference's DataLoader over data.Cifar10 yields: (im_corrupt NHWC noise, data NHWC, one-hot label).
    data_nchw = torch.rand(batch, 3, 32, 32)
    loader_data = data_nchw.permute(0, 2, 3, 1).contiguous()
    loader_corrupt = torch.rand(batch, 32, 32, 3)
    loader_label = torch.nn.functional.one_hot(torch.randint(0, 10, (batch,)), 10).double()

    def iteration() -> None:
        # train.py L341-342, L378-380 (.cuda(rank_idx) -> .to(dev))
        label = loader_label.float().to(dev)
        data = loader_data.permute(0, 3, 1, 2).float().contiguous()
        data_corrupt = torch.Tensor(loader_corrupt.clone().float()).permute(0, 3, 1, 2).float().contiguous()
        data = data.to(dev)
        data_corrupt = data_corrupt.to(dev)

        # L382-390: chains start from augmented buffer samples with probability 0.999
        if FLAGS.replay_batch and len(replay_buffer) >= FLAGS.batch_size:
            replay_batch, idxs = replay_buffer.sample(data_corrupt.size(0))
            replay_batch = ref.decompress_x_mod(replay_batch)
            replay_mask = np.random.uniform(0, 1, data_corrupt.size(0)) > 0.001
            data_corrupt[replay_mask] = torch.Tensor(replay_batch[replay_mask]).to(dev)

        # L394-395
        ix = random.randint(0, len(models) - 1)
        model = models[ix]

        # L406: an ordinary (non-save) iteration
        im_neg, im_neg_kl, x_grad = ref.gen_image(label, FLAGS, model, data_corrupt, num_steps)

        # L408-412
        energy_pos = model.forward(data, label[: data.size(0)])
        energy_neg = model.forward(im_neg.clone(), label)
        if FLAGS.replay_batch and (im_neg is not None):
            replay_buffer.add(ref.compress_x_mod(im_neg.detach().cpu().numpy()))

        # L414-415
        loss = energy_pos.mean() - energy_neg.mean()
        loss = loss + (torch.pow(energy_pos, 2).mean() + torch.pow(energy_neg, 2).mean())

        # L417-421: KL term, parameters frozen for this forward
        model.requires_grad_(False)
        loss_kl = model.forward(im_neg_kl, label)
        model.requires_grad_(True)
        loss = loss + FLAGS.kl_coeff * loss_kl.mean()

        # L423-441, L457 (cifar10 branch): entropy term against 100 augmented buffer samples
        start = timeit.timeit()  # noqa: F841  (sic, L424: runs 1e6 empty statements)
        bs = im_neg_kl.size(0)
        im_flat = torch.clamp(im_neg_kl.view(bs, -1), 0, 1)
        if len(replay_buffer) > 1000:
            compare_batch, idxs = replay_buffer.sample(100, no_transform=False)
            compare_batch = ref.decompress_x_mod(compare_batch)
            compare_batch = torch.Tensor(compare_batch).to(dev)
            compare_flat = compare_batch.view(100, -1)
            dist_matrix = torch.norm(im_flat[:, None, :] - compare_flat[None, :, :], p=2, dim=-1)
            loss_repel = torch.log(dist_matrix.min(dim=1)[0]).mean()
            loss = loss - 0.3 * loss_repel
        end = timeit.timeit()  # noqa: F841  (sic, L457)

        # L505-515 (gpus=1: no all-reduce)
        loss.backward()
        [ref.clip_grad_norm(m.parameters(), 0.5) for m in models]
        optimizer.step()
        optimizer.zero_grad()
        ref.ema_model(models, models_ema)

        # L517-521
        if torch.isnan(energy_pos.mean()):
            raise AssertionError("reference energy is NaN")
        if torch.abs(energy_pos.mean()) > 10.0:
            raise AssertionError("reference |E+| > 10 (the reference aborts training here)")

    iteration.stubbed = stubbed
    iteration.flags = FLAGS
    iteration.n_params = sum(p.numel() for p in models[0].parameters() if p.requires_grad)
    iteration.buffer = replay_buffer
    iteration.models, iteration.models_ema, iteration.optimizer = models, models_ema, optimizer
    return iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout of yilundu/improved_contrastive_divergence")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="Langevin steps per iteration (reference default 40)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message=r".*clip_grad_norm.*deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*clip_grad_norm is now deprecated", category=UserWarning)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    step = reference_iteration(args.reference, args.batch, args.steps, device)
    timed(step, device)  # warm-up
    times = [timed(step, device) for _ in range(args.rounds)]
    quirk = 2 * min(timed(timeit.timeit, device) for _ in range(3))  # the two timeit.timeit() calls per iteration

    print(f"reference: Improved CD train.py loop body, CIFAR-10 flags, {args.reference}")
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} langevin_steps={args.steps} "
          f"rounds={args.rounds} params={step.n_params / 1e6:.2f}M buffer={len(step.buffer)}")
    print(f"stubbed modules: {', '.join(step.stubbed)}")
    print(f"reference iteration: min {min(times) * 1e3:.1f} ms, median {statistics.median(times) * 1e3:.1f} ms")
    print(f"  of which the reference's two timeit.timeit() calls: about {quirk * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
