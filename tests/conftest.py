"Shared fixtures of the outside-in suite: small user files in every format, and the installed package in fresh processes."
import gzip, hashlib, os, subprocess, sys
from pathlib import Path

# The notebooks run in this process, one after another: numba must not start its GNU OpenMP threads (the default here),
# or a later notebook's benchmark workers (forked) would be killed. Set before anything imports numba.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
import numpy as np, pandas as pd, pytest, scipy.io, scipy.sparse as sp

BIN = Path(sys.executable).parent
SCDTL = str(BIN / "scdtl")  # the console script pip installed, as a user runs it


def run(args, *, cwd, timeout=600, **kw) -> subprocess.CompletedProcess:
    "Run a command in a fresh process with one BLAS/torch thread, capturing text output."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def python(code: str, *, cwd, timeout=600) -> subprocess.CompletedProcess:
    "Run `code` with the environment's Python in a fresh process (never this test's namespace)."
    return run([sys.executable, "-c", code], cwd=cwd, timeout=timeout)


def sha256(path) -> str: return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def barcodes(n: int) -> list:
    "`n` distinct 10x-like cell barcodes (so readers can tell cells from genes by their names)."
    rng = np.random.default_rng(0)
    return ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(n)]


@pytest.fixture(scope="session")
def pair():
    "A small simulated (single-cell, bulk) pair of count AnnDatas: 120 cells, 300 genes, 30 bulk samples."
    from scdtl.simulate import paired
    sc, bulk = paired(n_cells=120, n_genes=300, n_bulk=30, seed=0)
    sc.obs_names = barcodes(sc.n_obs)
    return sc, bulk


def write_sc(adata, fmt: str, folder: Path) -> Path:
    "Write the counts of `adata` as a user would bring them in format `fmt`; the path to pass to `scdtl impute`."
    X = sp.csr_matrix(adata.X).astype(np.float32)
    df = pd.DataFrame(X.toarray(), index=adata.obs_names, columns=adata.var_names)
    if fmt == "h5ad":
        p = folder / "cells.h5ad"; adata.write_h5ad(p)
    elif fmt == "10x_mtx":
        p = folder / "filtered_feature_bc_matrix"; p.mkdir()
        with gzip.open(p / "matrix.mtx.gz", "wb") as f: scipy.io.mmwrite(f, sp.coo_matrix(X.T.astype(np.int64)))
        genes = pd.DataFrame({"id": [f"ENSG{j:011d}" for j in range(adata.n_vars)], "name": adata.var_names,
                              "type": "Gene Expression"})
        genes.to_csv(p / "features.tsv.gz", sep="\t", header=False, index=False)
        pd.Series(adata.obs_names).to_csv(p / "barcodes.tsv.gz", sep="\t", header=False, index=False)
    elif fmt == "10x_h5":
        import h5py
        p = folder / "cells.h5"
        C = X.T.tocsc().astype(np.int32)  # CellRanger v3: genes x cells, CSC by cell
        with h5py.File(p, "w") as f:
            m = f.create_group("matrix")
            for k, v in dict(data=C.data, indices=C.indices, indptr=C.indptr, shape=np.array(C.shape)).items(): m[k] = v
            m["barcodes"] = np.array(adata.obs_names, dtype="S")
            feats = m.create_group("features")
            feats["id"] = np.array([f"ENSG{j:011d}" for j in range(adata.n_vars)], dtype="S")
            feats["name"] = np.array(adata.var_names, dtype="S")
            feats["feature_type"] = np.array(["Gene Expression"] * adata.n_vars, dtype="S")
            feats["genome"] = np.array(["GRCh38"] * adata.n_vars, dtype="S")
    elif fmt == "csv_cells_x_genes":
        p = folder / "cells.csv"; df.to_csv(p)
    elif fmt == "csv_genes_x_cells":
        p = folder / "cells_genes_x_cells.csv"; df.T.to_csv(p)
    elif fmt == "tsv_gz_genes_x_cells":
        p = folder / "cells.tsv.gz"; df.T.to_csv(p, sep="\t")
    else: raise ValueError(fmt)
    return p


def write_bulk(bulk, scale: str, folder: Path) -> Path:
    "The bulk panel as a CSV (rows = samples), in counts or on the log1p_norm scale."
    X = np.asarray(bulk.X, dtype=np.float64)
    if scale == "log1p_norm": X = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    p = folder / f"bulk_{scale}.csv"
    pd.DataFrame(X, index=bulk.obs_names, columns=bulk.var_names).to_csv(p)
    return p
