"scDTL single-cell imputation by transfer learning from bulk RNA-seq (generated from nbs/ by nbdev; this file is kept by hand)."
__version__ = "0.2.0"

import importlib

_LAZY = {"checks": "scdtl.checks", "data": "scdtl.data", "simulate": "scdtl.simulate", "metrics": "scdtl.metrics",
         "pp": "scdtl.pp", "tl": "scdtl.tl", "evaluate": "scdtl.evaluate", "baselines": "scdtl.baselines"}

def __getattr__(name):
    "Import submodules on first use, so `import scdtl` stays fast and torch loads only when needed."
    if name == "SCDTL": return importlib.import_module("scdtl.api").SCDTL
    if name in _LAZY: return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'scdtl' has no attribute {name!r}")
