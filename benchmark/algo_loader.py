"""Load an algos/ file as a module (the files are scripts, not a package); for the figure scripts."""

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
