"""Helpers of the benchmark scripts: load an algos/ file as a module (the files are scripts, not a package), read a run's TensorBoard scalars."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_algo(stem: str):
    spec = importlib.util.spec_from_file_location(f"algo_{stem}", ROOT / "algos" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def read_scalars(run_dir: str, tag: str) -> list[tuple[int, float, float]]:
    """[(step, wall time, value)] of one TensorBoard tag, [] if the run never wrote it. The algos/ files write
    with their own `EventWriter` (simple values, as torch's SummaryWriter writes); runs written with
    `tensorboard.summary.Writer`, as the files did before, store a scalar as a 0-d tensor."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    if tag in tags.get("tensors", []):
        return [(e.step, e.wall_time, float(make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
    if tag in tags.get("scalars", []):
        return [(e.step, e.wall_time, float(e.value)) for e in events.Scalars(tag)]
    return []
