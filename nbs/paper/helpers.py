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


def narrow(grid: pd.DataFrame, *, task=None, datasets=None, rates=None, seeds=None, methods=None) -> pd.DataFrame:
    "The rows of a saved grid of protocol `task` whose data set, rate, seed and method are among those given (None keeps all)."
    keep = np.ones(len(grid), bool)
    if task is not None and "task" in grid: keep &= (grid["task"] == task).to_numpy()  # older grids: held-out only
    for col, values in (("dataset", datasets), ("rate", rates), ("seed", seeds), ("method", methods)):
        if values is not None: keep &= grid[col].isin(values).to_numpy()
    return grid[keep].reset_index(drop=True)


def check_no_errors(grid: pd.DataFrame):
    "Fail loudly if a method failed on some task of the grid (the runner records the error instead of stopping)."
    if "error" in grid and grid.error.notna().any():
        bad = grid[grid.error.notna()]
        raise RuntimeError(f"{len(bad)} runs failed, e.g. {bad.method.iloc[0]} on {bad.dataset.iloc[0]}: {bad.error.iloc[0]}")


def method_colors(methods) -> dict:
    "One colour per method, the same in every figure: tab10 over the registry, scDTL fill / denoise lighter / darker scDTL."
    import seaborn as sns
    from scdtl.benchmark import METHODS
    colors = dict(zip(METHODS, sns.color_palette("tab10", len(METHODS))))
    colors["scDTL denoise"] = tuple(0.6 * c for c in colors["scDTL"])
    colors["scDTL fill"] = tuple(c + 0.5 * (1 - c) for c in colors["scDTL"])
    return {m: colors.get(m, (0.5, 0.5, 0.5)) for m in methods}
