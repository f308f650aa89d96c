"Helpers shared by the papermill notebooks of nbs/paper (not part of the scdtl package): parameters, folders, colours."
import tempfile
from pathlib import Path
import numpy as np
import pandas as pd


def parse_list(s: str, cast=str) -> list | None:  # "0.1, 0.2" -> [0.1, 0.2]
    "Comma-separated papermill parameter `s` as a list of `cast` values; None when empty (the default applies)."
    return [cast(x.strip()) for x in str(s).split(",") if x.strip()] or None


def output_folder(out_dir: str, name: str) -> Path:
    "`out_dir`, created if needed; a fresh temporary folder when empty, so test runs never overwrite committed figures."
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"scdtl_{name}_"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def narrow(grid: pd.DataFrame, *, datasets=None, rates=None, seeds=None, methods=None) -> pd.DataFrame:
    "The rows of a saved grid whose data set, rate, seed and method are among those given (None keeps all)."
    keep = np.ones(len(grid), bool)
    for col, values in (("dataset", datasets), ("rate", rates), ("seed", seeds), ("method", methods)):
        if values is not None: keep &= grid[col].isin(values).to_numpy()
    return grid[keep].reset_index(drop=True)


def method_colors(methods) -> dict:
    "One colour per method (seaborn's tab10), the same in every figure."
    import seaborn as sns
    return dict(zip(methods, sns.color_palette("tab10", len(methods))))
