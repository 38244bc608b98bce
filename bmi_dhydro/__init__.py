"""bmi-dhydro: a differentiable HBV hydrologic model as a CSDMS BMI 2.0 component."""

__version__ = "0.1.0"

# imported eagerly: ngen (python_type "bmi_dhydro.BmiDeltaModel") and bmi-tester look the class up in this module
from .bmi import BmiDeltaModel  # noqa: E402


def __getattr__(name):
    # lazy imports keep `import bmi_dhydro` cheap for hosts that only need metadata
    if name in ("DeltaModel", "ModelConfig", "ModelState"):
        from . import model

        return getattr(model, name)
    if name in ("load_checkpoint", "save_checkpoint", "default_checkpoint_path"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'bmi_dhydro' has no attribute {name!r}")


__all__ = ["BmiDeltaModel", "DeltaModel", "ModelConfig", "ModelState", "load_checkpoint", "save_checkpoint", "default_checkpoint_path"]
