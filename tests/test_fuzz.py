"""Property-based fuzzing of bad input: every file reader, `scdtl.tl.impute` and the `scdtl impute` command.

The contract, checked against the installed package in this process:

* bad input ends in `scdtl.checks.InputError` (a `ValueError`) whose message says what is wrong and what to do, or,
  where documented, in a warning (non-integer "counts" above the log range, `scdtl.checks.check_counts`);
* never in another exception type (the user would see a traceback), never in garbage accepted silently;
* never a modified input: files keep their sha256 and no file appears next to them; in-memory AnnData keep X/obs/var.

Each test fuzzes one kind of bad input (parametrized by case and format, hypothesis draws the details); every
attempt is recorded in `REPORT` and `test_zz_report` (last in the file) writes the counts to /tmp/fuzz_report.json
(an atexit hook writes it too, so a partial run also leaves one).

Hypothesis profile: SCDTL_FUZZ_PROFILE=ci (default: derandomized, reproducible; about 30 s on 2 cores) or
=explore (random seeds, 4x the examples; about 70 s). SCDTL_FUZZ_REPORT=path moves the report.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import gzip
import hashlib
import importlib
import io
import json
import os
import re
import signal
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import scdtl
import scdtl.cli
import scdtl.data
import scdtl.simulate
from scdtl.checks import InputError
from scdtl.config import Architecture, Schedule, get_config

# ----------------------------------------------------------------------------------------------------------------
# Settings, the tiny model, the report
# ----------------------------------------------------------------------------------------------------------------

PROFILE = os.environ.get("SCDTL_FUZZ_PROFILE", "ci")
_SCALE_EXAMPLES = 4 if PROFILE == "explore" else 1

def fuzz(n: int):
    "Hypothesis settings for a test trying `n` inputs (times 4 under the explore profile); no shrinking, no database."
    return settings(max_examples=n * _SCALE_EXAMPLES, deadline=None, database=None, derandomize=PROFILE != "explore",
                    phases=(Phase.explicit, Phase.generate), print_blob=False,
                    suppress_health_check=list(HealthCheck))

TINY = get_config("fast", name="tiny", arch=Architecture(n_top_genes=50, encoder_hidden=(16,), n_latent=4,
                                                         unet_channels=(4, 8, 16, 32)),
                  schedule=Schedule(max_epochs_pretrain=1, max_epochs_bulk=1, max_epochs_dtl=1, max_epochs_sc=1))

REPORT: list[dict] = []   # one record per input tried
REPORT_PATH = Path(os.environ.get("SCDTL_FUZZ_REPORT", "/tmp/fuzz_report.json"))
WARN_COUNTS = r"not whole numbers"   # check_counts: non-integer counts above the log range are warned about, not refused

def _summary() -> dict:
    "The counts the report asks for, per test and in total, and one line per distinct bug."
    def counts(recs):
        return {"inputs_tried": len(recs),
                "input_error": sum(r["outcome"] == "InputError" for r in recs),
                "documented_warning": sum(r["outcome"] == "warning" for r in recs),
                "accepted_valid": sum(r["outcome"] == "ok" and r["bug"] is None for r in recs),
                "other_exception": sum(r["outcome"] == "other" for r in recs),
                "accepted_garbage": sum(r["outcome"] in ("ok", "warning") and r["bug"] is not None for r in recs),
                "refused_valid": sum(r["bug"] == "refused valid input" for r in recs),
                "bad_message": sum(r["outcome"] == "InputError" and r["bug"] not in (None, "refused valid input",
                                                                                     "modified the input") for r in recs),
                "modified_input": sum(bool(r["modified"]) for r in recs)}
    tests = sorted({r["test"] for r in REPORT})
    bugs = {}
    for r in REPORT:
        if r["bug"]: bugs.setdefault((r["test"], r["case"], r["bug"]), r)
    def samples(t, k=8):  # distinct InputError messages of test t (temporary paths cut), for reading their wording
        seen = {}
        for r in REPORT:
            if r["test"] == t and r["outcome"] == "InputError":
                seen.setdefault(re.sub(r"/tmp/\S+?/", "…/", r["detail"])[:60], re.sub(r"/tmp/\S+?/", "…/", r["detail"]))
        return list(seen.values())[:k]
    return {"total": counts(REPORT), "per_test": {t: counts([r for r in REPORT if r["test"] == t]) for t in tests},
            "distinct_bugs": [{"test": t, "case": c, "bug": b, "detail": r["detail"]} for (t, c, b), r in bugs.items()],
            "message_samples": {t: samples(t) for t in tests}}

def _write_report():
    if REPORT: REPORT_PATH.write_text(json.dumps(_summary(), indent=1, default=str))

atexit.register(_write_report)

def _last_frames(e: BaseException) -> str:
    "The innermost frame of `e`'s traceback, and the innermost one inside scdtl if that is another."
    tb = traceback.extract_tb(e.__traceback__)
    if not tb: return ""
    fmt = lambda f: f"{Path(f.filename).name}:{f.lineno} in {f.name}: {f.line}"
    own = [f for f in tb if "/scdtl/" in f.filename]
    return fmt(tb[-1]) + (f"  (last scdtl frame {fmt(own[-1])})" if own and own[-1] is not tb[-1] else "")

def record(test: str, case: str, outcome: str, allow: set, *, detail: str = "", modified: str | None = None,
           bug: str | None = None) -> dict:
    "Add one attempt to REPORT; `bug` is derived from `outcome` vs `allow` unless given."
    if bug is None:
        if outcome == "other": bug = "other exception"
        elif outcome in ("ok", "warning") and outcome not in allow: bug = "accepted silently" if outcome == "ok" else \
            "only a warning"
        elif outcome == "InputError" and "error" not in allow: bug = "refused valid input"
        elif modified: bug = "modified the input"
    r = {"test": test, "case": case, "outcome": outcome, "allow": sorted(allow), "detail": detail, "modified": modified,
         "bug": bug}
    REPORT.append(r)
    return r

def attempt(test: str, case: str, fn, *, allow=("error",), warn: str | None = None, changed=None, names: str | None = None):
    """Run `fn()`, classify how it ended, record it and return (record, result, exception).

    allow: outcomes that are fine here: "error" (InputError), "warning" (done, with a warning matching `warn`), "ok".
    changed: called after the run; returns None if the input is unchanged, else what changed.
    names: text an InputError's message must contain (the file's name, so the user knows which input is bad)."""
    allow = set(allow)
    result = exc = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try: result = fn()
        except Exception as e: exc = e  # noqa: BLE001 -- any exception is an outcome to classify
    if isinstance(exc, InputError): outcome, detail = "InputError", str(exc)
    elif exc is not None: outcome, detail = "other", f"{type(exc).__name__}: {exc} @ {_last_frames(exc)}"
    elif warn and any(re.search(warn, str(w.message)) for w in caught): outcome, detail = "warning", warn
    else: outcome, detail = "ok", ""
    modified = changed() if changed else None
    bug = None
    if outcome == "InputError" and len(str(exc).strip()) < 20: bug = "InputError without an explanation"
    elif outcome == "InputError" and names and names not in str(exc): bug = f"InputError does not name the file {names!r}"
    rec = record(test, case, outcome, allow, detail=detail, modified=modified, bug=bug)
    if outcome == "other" and exc is not None:
        rec["traceback"] = "".join(traceback.format_exception(exc))[-3000:]
    return rec, result, exc

def check(rec: dict):
    "Fail the example if its record is a bug, with everything needed to reproduce it."
    if rec["bug"]:
        raise AssertionError(f"{rec['test']} / {rec['case']}: {rec['bug']} (outcome {rec['outcome']}, allowed "
                             f"{rec['allow']}): {rec['detail']}" + (f"; modified: {rec['modified']}" if rec["modified"] else "")
                             + ("\n" + rec["traceback"] if "traceback" in rec else ""))

# ----------------------------------------------------------------------------------------------------------------
# Inputs that must not change
# ----------------------------------------------------------------------------------------------------------------

def tree_hashes(folder: Path) -> dict:
    "sha256 of every file under `folder` (and the set of paths, so a new file counts as a change)."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}

def files_changed(folder: Path, before: dict):
    "A closure for `attempt(changed=...)`: which files under `folder` changed, appeared or vanished."
    def changed():
        after = tree_hashes(folder)
        diff = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        return ", ".join(diff) or None
    return changed

def _same_matrix(a, b) -> bool:
    if type(a) is not type(b) or getattr(a, "shape", None) != getattr(b, "shape", None): return False
    if a is None: return True
    if sp.issparse(a):
        return (a.dtype == b.dtype and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
                and _same_matrix(np.asarray(a.data), np.asarray(b.data)))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype: return False
    if a.dtype.kind in "fc": return np.array_equal(a, b, equal_nan=True)
    return bool((a == b).all()) if a.size else True

def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try: pd.testing.assert_frame_equal(a, b, check_exact=True); return True
    except AssertionError: return False

def adata_changed(adata, before, *, added=()):
    "A closure: how `adata` differs from its copy `before` (X, layers, obs, var, obsm, uns), ignoring `added` keys."
    def changed():
        out = []
        if not _same_matrix(adata.X, before.X): out.append("X")
        if not adata.obs_names.equals(before.obs_names): out.append("obs_names")
        if not adata.var_names.equals(before.var_names): out.append("var_names")
        if not _same_frame(adata.obs, before.obs): out.append("obs")
        var = adata.var.drop(columns=[k for k in added if k in adata.var.columns])
        if not _same_frame(var, before.var): out.append("var")
        for name, now, was in (("layers", adata.layers, before.layers), ("obsm", adata.obsm, before.obsm),
                               ("uns", adata.uns, before.uns)):
            keys = set(now.keys()) - set(added)
            if keys != set(was.keys()) - set(added): out.append(f"{name} keys {sorted(set(now.keys()) ^ set(was.keys()))}")
            elif name == "layers": out += [f"layers[{k}]" for k in keys if not _same_matrix(now[k], was[k])]
        return ", ".join(out) or None
    return changed

# ----------------------------------------------------------------------------------------------------------------
# A small count table, and writers for every format the readers take
# ----------------------------------------------------------------------------------------------------------------

SYMBOLS = ("TP53", "CD3E", "MYOG", "GAPDH", "ACTB", "EGFR", "KRAS", "MYC", "CD19", "PTPRC", "NKG7", "LYZ")

@dataclass
class Table:
    "A cells x genes matrix and its names (X float, or object when it holds strings)."
    X: np.ndarray
    cells: list
    genes: list

@st.composite
def tables(draw, min_cells=2, max_cells=6, min_genes=2, max_genes=6) -> Table:
    "Valid small counts: `cell_i` rows (not gene-like), gene-symbol columns, no all-zero cell."
    n, g = draw(st.integers(min_cells, max_cells)), draw(st.integers(min_genes, max_genes))
    X = draw(arrays(np.int64, (n, g), elements=st.integers(0, 60))).astype(np.float64)
    X[:, 0] += 1
    return Table(X, [f"cell_{i}" for i in range(n)], list(SYMBOLS[:g]))

TEXT = ("csv", "tsv", "txt", "csv.gz", "tsv.gz")
TENX = ("10x_v3", "10x_v2", "10x_h5")
FORMATS = TEXT + ("h5ad",) + TENX

def _bytes(names) -> np.ndarray:
    return np.array([str(n).encode("utf-8") for n in names], dtype=bytes) if len(names) else np.array([], dtype="S1")

def _integral(v) -> bool:
    v = np.asarray(v, dtype=float)
    return bool(np.isfinite(v).all() and (v == np.round(v)).all())

def write_table(t: Table, path: Path, *, genes_on_rows: bool = False) -> Path:
    "CSV (.csv) or TSV (.tsv, .txt), gzipped if the name ends in .gz; cells x genes, or genes x cells."
    sep = "," if ".csv" in path.name else "\t"
    df = pd.DataFrame(t.X, index=pd.Index(t.cells, dtype=object), columns=pd.Index(t.genes, dtype=object))
    if genes_on_rows: df = df.T
    df.to_csv(path, sep=sep, index_label="gene" if genes_on_rows else "cell", na_rep="NaN", compression="infer")
    return path

def write_h5ad(t: Table, path: Path, *, sparse: bool = False) -> Path:
    "An .h5ad of `t` (X dense, or CSR when `sparse` and numeric)."
    X = t.X
    if sparse and X.dtype.kind in "fiu": X = sp.csr_matrix(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad.AnnData(X, obs=pd.DataFrame(index=pd.Index(t.cells, dtype=object)),
                   var=pd.DataFrame(index=pd.Index(t.genes, dtype=object))).write_h5ad(path)
    return path

def write_10x_dir(t: Table, folder: Path, *, v2: bool = False) -> Path:
    "A 10x matrix folder: v3 (matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz) or v2 (plain, genes.tsv)."
    folder.mkdir()
    M = sp.coo_matrix(np.asarray(t.X, dtype=np.float64).T)  # genes x cells
    if _integral(M.data): M = M.astype(np.int64)
    opener, gz = (open, "") if v2 else (gzip.open, ".gz")
    with opener(folder / f"matrix.mtx{gz}", "wb") as f: scipy.io.mmwrite(f, M)
    with opener(folder / ("genes.tsv" if v2 else "features.tsv.gz"), "wt", encoding="utf-8") as f:
        f.writelines(f"ENSG{i:011d}\t{g}" + ("" if v2 else "\tGene Expression") + "\n" for i, g in enumerate(t.genes))
    with opener(folder / f"barcodes.tsv{gz}", "wt", encoding="utf-8") as f: f.writelines(f"{c}\n" for c in t.cells)
    return folder

def write_10x_h5(t: Table, path: Path) -> Path:
    "A CellRanger v3 .h5: /matrix/{data,indices,indptr,shape,barcodes,features/{id,name,feature_type,genome}}."
    Xt = sp.csc_matrix(np.asarray(t.X, dtype=np.float64).T)  # genes x cells, columns = cells
    with warnings.catch_warnings(), h5py.File(path, "w") as f:
        warnings.simplefilter("ignore")  # 1e39 overflows float32 on purpose
        m = f.create_group("matrix")
        m["data"] = Xt.data.astype(np.int32 if _integral(Xt.data) else np.float32)
        m["indices"], m["indptr"], m["shape"] = Xt.indices.astype(np.int64), Xt.indptr.astype(np.int64), np.array(Xt.shape)
        m["barcodes"] = _bytes(t.cells)
        ft = m.create_group("features")
        ft["id"] = _bytes([f"ENSG{i:011d}" for i in range(len(t.genes))])
        ft["name"] = _bytes(t.genes)
        ft["feature_type"] = _bytes(["Gene Expression"] * len(t.genes))
        ft["genome"] = _bytes(["GRCh38"] * len(t.genes))
    return path

def write(t: Table, folder: Path, fmt: str, *, genes_on_rows: bool = False, sparse: bool = False) -> Path:
    "Write `t` into `folder` in format `fmt` (a member of FORMATS); the path to give the reader."
    if fmt in TEXT: return write_table(t, folder / f"counts.{fmt}", genes_on_rows=genes_on_rows)
    if fmt == "h5ad": return write_h5ad(t, folder / "counts.h5ad", sparse=sparse)
    if fmt == "10x_h5": return write_10x_h5(t, folder / "counts.h5")
    return write_10x_dir(t, folder / "filtered_feature_bc_matrix", v2=fmt == "10x_v2")

# ----------------------------------------------------------------------------------------------------------------
# Corruptions of a Table: case name -> (function(draw, table) -> table, formats it applies to, allowed outcomes)
# ----------------------------------------------------------------------------------------------------------------

def _cell(draw, t: Table) -> tuple[int, int]:
    return draw(st.integers(0, len(t.cells) - 1)), draw(st.integers(0, len(t.genes) - 1))

def _put(draw, t: Table, value) -> Table:
    "`t` with one entry set to `value` (the matrix becomes object dtype for a string)."
    X = t.X.astype(object if isinstance(value, str) else np.float64)
    X[_cell(draw, t)] = value
    return replace(t, X=X)

def _is_number(s: str) -> bool:
    try: float(s.strip()); return True
    except ValueError: return False

NOT_NUMBERS = st.one_of(st.sampled_from(["abc", "1,5", "one", "1 2", "--", "0x1F", "True", "1e", "?", "NA", "", " ",
                                         "1.2.3", "#N/A", "3 counts", "[1]"]),
                        st.text(min_size=1, max_size=6).filter(lambda s: not _is_number(s) and "\x00" not in s))
NON_ASCII = st.text(st.characters(codec="utf-8", min_codepoint=128, exclude_categories=("Cs", "Cc")), min_size=1, max_size=6)

def _dup(draw, t: Table, axis: str) -> Table:
    names = list(getattr(t, axis))
    i, j = draw(st.lists(st.integers(0, len(names) - 1), min_size=2, max_size=2, unique=True))
    names[j] = names[i]
    return replace(t, **{axis: names})

def _empty_name(draw, t: Table) -> Table:
    axis = draw(st.sampled_from(["cells", "genes"]))
    names = list(getattr(t, axis)); names[draw(st.integers(0, len(names) - 1))] = draw(st.sampled_from(["", " ", "\t"]))
    return replace(t, **{axis: names})

def _non_ascii(draw, t: Table) -> Table:
    axis = draw(st.sampled_from(["cells", "genes"]))
    n = len(getattr(t, axis))
    return replace(t, **{axis: draw(st.lists(NON_ASCII, min_size=n, max_size=n, unique_by=lambda s: s.strip()))})

def _overflow_text(draw, t: Table) -> Table:
    return _put(draw, t, "1" + "0" * draw(st.integers(19, 45)))  # beyond int64; from 1e39 also beyond float32

def _lognorm(X: np.ndarray) -> np.ndarray:
    tot = X.sum(1, keepdims=True)
    return np.log1p(X / np.where(tot > 0, tot, 1) * 1e4)

ERR, OK, ANY = {"error"}, {"ok"}, {"error", "ok"}
ALL = {"error", "ok", "warning"}

CONTENT = {  # case -> (corrupt, formats, allowed outcomes: a set, or fmt -> set)
    "valid": (lambda d, t: t, FORMATS, OK),
    "negative": (lambda d, t: _put(d, t, -float(d.st_neg)), FORMATS, ERR),
    "nan": (lambda d, t: _put(d, t, np.nan), FORMATS, ERR),
    "inf_or_beyond_float32": (lambda d, t: _put(d, t, d(st.sampled_from([np.inf, -np.inf, 1e39, -1e39, 1e300]))), FORMATS, ERR),
    "string_value": (lambda d, t: _put(d, t, d(NOT_NUMBERS)), TEXT, ERR),
    "true_false_column": (lambda d, t: replace(t, X=np.where(t.X > 0, "True", "False").astype(object)) if d(st.booleans())
                          else _bool_column(d, t), TEXT, ERR),
    "bool_matrix": (lambda d, t: replace(t, X=t.X > 0), ("h5ad",), ERR),
    "string_matrix": (lambda d, t: replace(t, X=t.X.astype(int).astype(str).astype(object)), ("h5ad",), ERR),
    "complex_matrix": (lambda d, t: replace(t, X=t.X + 1j), ("h5ad",), ERR),
    "integer_beyond_int64": (_overflow_text, TEXT, ANY),
    "zero_cells": (lambda d, t: replace(t, X=t.X[:0], cells=[]), FORMATS, ERR),
    "zero_genes": (lambda d, t: replace(t, X=t.X[:, :0], genes=[]), FORMATS, ERR),
    "one_cell": (lambda d, t: replace(t, X=t.X[:1], cells=t.cells[:1]), FORMATS, ANY),
    "one_gene": (lambda d, t: replace(t, X=t.X[:, :1], genes=t.genes[:1]), FORMATS, ANY),
    "all_zero_cell": (lambda d, t: _zero(d, t, 0), FORMATS, OK),
    "all_zero_gene": (lambda d, t: _zero(d, t, 1), FORMATS, OK),
    "duplicated_genes": (lambda d, t: _dup(d, t, "genes"), FORMATS, lambda fmt: ANY if fmt in TENX else ERR),
    "duplicated_cells": (lambda d, t: _dup(d, t, "cells"), FORMATS, ERR),
    "empty_name": (_empty_name, FORMATS, lambda fmt: ANY if fmt in TENX else ERR),
    "non_ascii_names": (_non_ascii, FORMATS, ANY),
    "ensembl_ids": (lambda d, t: replace(t, genes=[f"ENSG{i + 100000:011d}" for i in range(len(t.genes))]), FORMATS, OK),
    "non_integer": (lambda d, t: replace(t, X=t.X + d(st.sampled_from([0.5, 0.25, 1e-3]))), FORMATS, ALL),  # checked by impute
    "log_normalised": (lambda d, t: replace(t, X=_lognorm(t.X)), FORMATS, ALL),  # the scale is checked by impute
}

def _bool_column(d, t: Table) -> Table:
    X = t.X.astype(object); j = d(st.integers(0, X.shape[1] - 1))
    X[:, j] = np.where(t.X[:, j] > 0, "True", "False")
    return replace(t, X=X)

def _zero(d, t: Table, axis: int) -> Table:
    X = t.X.copy(); k = d(st.integers(0, X.shape[axis] - 1))
    if axis == 0: X[k] = 0
    else: X[:, k] = 0
    return replace(t, X=X)

class _Draw:
    "hypothesis' `data.draw` with a few shared strategies as attributes (d.st_neg)."
    def __init__(self, data): self.data = data
    def __call__(self, strategy): return self.data.draw(strategy)
    @property
    def st_neg(self): return self(st.one_of(st.integers(1, 1000), st.floats(1e-6, 1e6)))

def _allowed(spec, fmt) -> set:
    return spec(fmt) if callable(spec) else spec

CONTENT_PARAMS = [(c, f) for c, (_, fmts, _) in CONTENT.items() for f in fmts]

# ----------------------------------------------------------------------------------------------------------------
# Readers: content of an otherwise well-formed file
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,fmt", CONTENT_PARAMS, ids=[f"{c}-{f}" for c, f in CONTENT_PARAMS])
@fuzz(8)
@given(data=st.data())
def test_read_content(case, fmt, data):
    """`scdtl.data.read` on a small count matrix written in `fmt` (every format: CSV/TSV/TXT, gzipped or not, either
    orientation; h5ad dense or sparse; 10x v3 and v2 folders; 10x .h5) and corrupted by `case` (negative, NaN, inf,
    strings, True/False, object/bool/complex dtypes, 0 cells, 0 genes, one row/column, all-zero rows, duplicated, empty
    or non-ASCII names, Ensembl ids, non-integer or log-normalised values). Valid files must read back exactly."""
    d = _Draw(data)
    corrupt, _, spec = CONTENT[case]
    t0 = d(tables())
    t = corrupt(d, t0)
    genes_on_rows, sparse = d(st.booleans()), d(st.booleans())
    orientation = d(st.sampled_from(["auto", "genes_x_cells" if genes_on_rows else "cells_x_genes"])) if fmt in TEXT \
        else d(st.sampled_from(["auto", "cells_x_genes", "genes_x_cells"]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write(t, folder, fmt, genes_on_rows=genes_on_rows, sparse=sparse)
        before = tree_hashes(folder)
        rec, a, _ = attempt("read_content", f"{case}/{fmt}", lambda: scdtl.data.read(path, orientation=orientation),
                            allow=_allowed(spec, fmt), warn=WARN_COUNTS, changed=files_changed(folder, before),
                            names=path.name)
    if case == "valid" and a is not None and rec["bug"] is None and (  # the writers are right: refusals mean something
            a.shape != t.X.shape or not np.array_equal(a.X.toarray(), t.X) or list(a.obs_names) != t.cells
            or list(a.var_names) != t.genes):
        rec["bug"] = f"valid {fmt} read back wrong: shape {a.shape}, names {list(a.obs_names)[:3]} {list(a.var_names)[:3]}"
    check(rec)

# ----------------------------------------------------------------------------------------------------------------
# Readers: damaged, mislabelled, empty and missing files
# ----------------------------------------------------------------------------------------------------------------

TRUNCATABLE = {  # format -> (allowed outcomes when cut, the file inside a folder format to cut)
    "h5ad": (ERR, None), "10x_h5": (ERR, None), "csv.gz": (ERR, None), "tsv.gz": (ERR, None),
    "csv": (ANY, None), "tsv": (ANY, None),  # a text table cut at a line end is a smaller valid table
    "10x_v3": (ERR, "matrix.mtx.gz"), "10x_v3_features": (ERR, "features.tsv.gz"),
}

@pytest.mark.parametrize("fmt", list(TRUNCATABLE))
@fuzz(25)
@given(data=st.data())
def test_read_truncated(fmt, data):
    """`read` on a valid file (or one file of a 10x folder) cut at a random byte: an .h5ad / .h5 / .gz that ends early
    must be refused; a plain text table may read as the smaller table it still is."""
    d = _Draw(data)
    allow, inner = TRUNCATABLE[fmt]
    t = d(tables(min_cells=3, min_genes=3))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write(t, folder, fmt.replace("_features", ""))
        victim = path / inner if inner else path
        size = victim.stat().st_size
        cut = d(st.integers(0, size - 1))
        victim.write_bytes(victim.read_bytes()[:cut])
        before = tree_hashes(folder)
        rec, _, _ = attempt("read_truncated", f"{fmt}@{cut}/{size}", lambda: scdtl.data.read(path), allow=allow,
                            changed=files_changed(folder, before), names=path.name)
    check(rec)

def _valid_bytes(kind: str, folder: Path) -> bytes:
    "The bytes of a valid file of `kind`: csv text, h5ad, 10x h5, gzipped csv."
    t = Table(np.array([[1.0, 0.0], [0.0, 2.0]]), ["cell_0", "cell_1"], ["TP53", "CD3E"])
    p = {"csv": lambda: write_table(t, folder / "v.csv"), "h5ad": lambda: write_h5ad(t, folder / "v.h5ad"),
         "h5": lambda: write_10x_h5(t, folder / "v.h5"), "csv.gz": lambda: write_table(t, folder / "v.csv.gz")}[kind]()
    data = p.read_bytes(); p.unlink()
    return data

MISLABEL_TARGETS = (".h5ad", ".h5", ".csv", ".tsv", ".txt", ".csv.gz")
MISLABEL = [(s, t) for s in ("csv", "h5ad", "h5", "csv.gz") for t in MISLABEL_TARGETS
            if not (s == t.lstrip(".") or (s == "csv" and t in (".tsv", ".txt")))]

@pytest.mark.parametrize("source,target", MISLABEL, ids=[f"{s}-as{t}" for s, t in MISLABEL])
@fuzz(3)
@given(data=st.data())
def test_read_mislabelled(source, target, data):
    """`read` on a valid file of one format named as another (CSV bytes named .h5ad, HDF5 bytes named .csv, gzip
    bytes named .h5, an .h5ad named .h5, ...): refused with InputError."""
    name = _Draw(data)(st.sampled_from(["data", "x.y", "counts matrix"])) + target
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / name
        path.write_bytes(_valid_bytes(source, folder))
        before = tree_hashes(folder)
        rec, _, _ = attempt("read_mislabelled", f"{source}-as{target}", lambda: scdtl.data.read(path), allow=ERR,
                            changed=files_changed(folder, before), names=path.name)
    check(rec)

@pytest.mark.parametrize("target", MISLABEL_TARGETS + (".tsv.gz",))
@fuzz(30)
@given(data=st.data())
def test_read_random_bytes(target, data):
    """`read` on random bytes (also behind an HDF5 or gzip signature) named as each format: refused, except that
    random bytes named as a plain text table may by chance be a valid table."""
    d = _Draw(data)
    prefix = d(st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"\x1f\x8b\x08\x00"]))
    payload = prefix + d(st.binary(min_size=0, max_size=300))
    allow = ANY if target in (".csv", ".tsv", ".txt") and not prefix else ERR
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / f"random{target}"
        path.write_bytes(payload)
        before = tree_hashes(folder)
        rec, _, _ = attempt("read_random_bytes", f"random{target}", lambda: scdtl.data.read(path), allow=allow,
                            changed=files_changed(folder, before), names=path.name)
    check(rec)

@fuzz(40)
@given(data=st.data())
def test_read_empty_missing_unknown(data):
    """`read` on an empty file of every suffix, a path that does not exist, an empty folder, a folder named like a
    table, a file with an unknown suffix (.xlsx, .loom, .mtx, .csv.bz2, none): InputError naming the path."""
    d = _Draw(data)
    kind = d(st.sampled_from(["empty_file", "missing", "empty_folder", "folder_named_csv", "unknown_suffix"]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if kind == "empty_file":
            path = folder / ("e" + d(st.sampled_from(MISLABEL_TARGETS + (".tsv.gz", ".txt.gz")))); path.write_bytes(b"")
        elif kind == "missing":
            stem = d(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/\\"),
                             min_size=1, max_size=8))
            path = folder / "nowhere" / (stem + d(st.sampled_from(MISLABEL_TARGETS + ("",))))
        elif kind == "empty_folder": path = folder / "empty"; path.mkdir()
        elif kind == "folder_named_csv": path = folder / "table.csv"; path.mkdir()
        else:
            path = folder / ("data" + d(st.sampled_from([".xlsx", ".loom", ".mtx", ".json", "", ".csv.bz2", ".h5ad.zip"])))
            path.write_text("cell,TP53,CD3E\ncell_0,1,0\ncell_1,0,2\n")
        before = tree_hashes(folder)
        arg = d(st.sampled_from([str, Path]))(path)
        rec, _, _ = attempt("read_empty_missing_unknown", kind, lambda: scdtl.data.read(arg), allow=ERR,
                            changed=files_changed(folder, before), names=path.name)
    check(rec)

TENX_FILES = {"10x_v3": ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"), "10x_v2": ("matrix.mtx", "genes.tsv", "barcodes.tsv")}

@pytest.mark.parametrize("fmt", list(TENX_FILES))
@fuzz(25)
@given(data=st.data())
def test_read_10x_folder_damaged(fmt, data):
    """`read` on a 10x folder with a file missing, or with features/barcodes that do not match the matrix (a line
    short or long), or with a matrix file that is not MatrixMarket: InputError."""
    d = _Draw(data)
    t = d(tables(min_cells=2, min_genes=2))
    damage = d(st.sampled_from(["missing", "features_short", "features_long", "barcodes_short", "barcodes_long",
                                "matrix_not_mtx", "matrix_wrong_shape"]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write(t, folder, fmt)
        matrix, features, barcodes = (path / n for n in TENX_FILES[fmt])
        op = gzip.open if fmt == "10x_v3" else open
        if damage == "missing": (path / d(st.sampled_from(TENX_FILES[fmt]))).unlink()
        elif damage in ("features_short", "barcodes_short", "features_long", "barcodes_long"):
            f = features if damage.startswith("features") else barcodes
            with op(f, "rt", encoding="utf-8") as h: lines = h.read().splitlines(keepends=True)
            lines = lines[:-1] if damage.endswith("short") else lines + [lines[-1].replace("_", "_x").replace("G", "Gx", 1)]
            with op(f, "wt", encoding="utf-8") as h: h.writelines(lines)
        elif damage == "matrix_not_mtx":
            with op(matrix, "wb") as h: h.write(d(st.binary(max_size=100)))
        else:
            bigger = sp.coo_matrix(np.ones((len(t.genes) + 1, len(t.cells) + 1), dtype=np.int64))
            with op(matrix, "wb") as h: scipy.io.mmwrite(h, bigger)
        before = tree_hashes(folder)
        rec, _, _ = attempt("read_10x_folder_damaged", f"{fmt}/{damage}", lambda: scdtl.data.read(path), allow=ERR,
                            changed=files_changed(folder, before), names=path.name)
    check(rec)

READ_ARGUMENTS = {"orientation": ("auto", "cells_x_genes", "genes_x_cells"), "scale": tuple(scdtl.checks.SCALES),
                  "kind": ("single-cell", "bulk", "time course")}

@fuzz(40)
@given(data=st.data())
def test_read_arguments(data):
    """`read` with one keyword fuzzed and the others valid: orientation, scale and kind must be one of the documented
    values (any other text, or None, is an InputError); documented values read the file."""
    d = _Draw(data)
    which = d(st.sampled_from(list(READ_ARGUMENTS)))
    value = d(st.one_of(st.sampled_from(READ_ARGUMENTS[which]), st.text(max_size=12), st.none(),
                        st.sampled_from(["Auto", "cells", "genes x cells", "single_cell", "sc", "COUNTS", " counts"])))
    valid = value in READ_ARGUMENTS[which]
    kwargs = {"orientation": "auto", "scale": "counts", "kind": "single-cell"} | {which: value}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_table(Table(np.array([[1.0, 0.0], [0.0, 2.0]]), ["cell_0", "cell_1"], ["TP53", "CD3E"]), folder / "c.csv")
        before = tree_hashes(folder)
        rec, _, _ = attempt("read_arguments", f"{which}={'valid' if valid else repr(value)}",
                            lambda: scdtl.data.read(path, **kwargs), allow=OK if valid else ERR,
                            changed=files_changed(folder, before))
    check(rec)

# ----------------------------------------------------------------------------------------------------------------
# read_bulk: values against the declared scale
# ----------------------------------------------------------------------------------------------------------------

BULK_VALUES = {  # kind of bulk values -> function(draw, counts table) -> table
    "counts": lambda d, t: t,
    "log1p_norm": lambda d, t: replace(t, X=_lognorm(t.X)),
    "standardized": lambda d, t: replace(t, X=(_lognorm(t.X) - _lognorm(t.X).mean(1, keepdims=True)) / 1.7),
    "negative_counts": lambda d, t: _put(d, t, -float(d.st_neg)),
    "nan": lambda d, t: _put(d, t, np.nan),
    "string": lambda d, t: _put(d, t, d(NOT_NUMBERS)),
}

def _bulk_allowed(values: str, scale: str) -> set:
    "What read_bulk may do with `values` declared as `scale` (it defers whole-number / log-range checks to impute)."
    if scale not in ("counts", "log1p_norm", "log_array_standardized") or values in ("nan", "string"): return ERR
    negative = values in ("standardized", "negative_counts")
    if negative: return OK if scale == "log_array_standardized" else ERR
    if values == "counts" and scale == "counts": return OK
    return ALL  # counts declared log, or log declared counts: the scale checks belong to impute (tested there)

@pytest.mark.parametrize("values", list(BULK_VALUES))
@fuzz(15)
@given(data=st.data())
def test_read_bulk(values, data):
    """`scdtl.data.read_bulk` on a bulk table (csv/tsv/gz/h5ad) of counts, log1p_norm or standardized values, with
    negative counts, NaN or strings, declared on any scale (or an unknown one): wrong scales and bad values are refused."""
    d = _Draw(data)
    t = d(tables(min_cells=2))
    t = BULK_VALUES[values](d, replace(t, cells=[f"S{i:03d}" for i in range(len(t.cells))]))
    scale = d(st.one_of(st.sampled_from(["counts", "log1p_norm", "log_array_standardized"]),
                        st.sampled_from(["fpkm", "minmax", "log", "", "COUNTS"]), st.text(max_size=10)))
    fmt = d(st.sampled_from(["csv", "tsv", "csv.gz"] + ([] if values == "string" else ["h5ad"])))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write(t, folder, fmt, sparse=d(st.booleans()))
        before = tree_hashes(folder)
        rec, b, _ = attempt("read_bulk", f"{values}-as-{scale if scale in scdtl.checks.SCALES else 'unknown'}/{fmt}",
                            lambda: scdtl.data.read_bulk(path, scale=scale), allow=_bulk_allowed(values, scale),
                            warn=WARN_COUNTS, changed=files_changed(folder, before),
                            names=path.name if scale in ("counts", "log1p_norm", "log_array_standardized") else None)
    if b is not None and rec["bug"] is None and not (isinstance(b.X, np.ndarray) and b.X.dtype == np.float32):
        rec["bug"] = f"read_bulk returned {type(b.X).__name__} {b.X.dtype}, documented: dense float32"
    check(rec)

# ----------------------------------------------------------------------------------------------------------------
# scdtl.tl.impute on in-memory AnnData
# ----------------------------------------------------------------------------------------------------------------

@functools.cache
def _pair():
    return scdtl.simulate.paired(n_cells=60, n_genes=120, n_bulk=20, seed=0)

def fresh_pair():
    "A fresh copy of the valid small (sc, bulk) count pair."
    sc_, bulk = _pair()
    return sc_.copy(), bulk.copy()

def _with_X(a, X):
    "`a` (copy) with X replaced (shape may change: names cut to fit)."
    n, g = X.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ad.AnnData(X, obs=a.obs.iloc[:n].copy(), var=a.var.iloc[:g].copy(), uns=dict(a.uns))

def _dense(a) -> np.ndarray:
    return a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)

def _set_one(d, a, value):
    X = _dense(a).astype(np.float64)
    X[d(st.integers(0, X.shape[0] - 1)), d(st.integers(0, X.shape[1] - 1))] = value
    return _with_X(a, X)

def _names(a, axis, names):
    a = a.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if axis == "obs": a.obs_names = pd.Index(names, dtype=object)
        else: a.var_names = pd.Index(names, dtype=object)
    return a

def _dup_names(d, a, axis):
    names = list(a.obs_names if axis == "obs" else a.var_names)
    i, j = d(st.lists(st.integers(0, len(names) - 1), min_size=2, max_size=2, unique=True))
    names[j] = names[i]
    return _names(a, axis, names)

def _ensembl(a, keep: int = 0):
    "`a` with all but its first `keep` genes renamed to Ensembl ids (which the symbol-named bulk does not have)."
    return _names(a, "var", [g if i < keep else f"ENSG{i + 1:011d}" for i, g in enumerate(a.var_names)])

def _few(d, a, lo, hi):
    n = d(st.integers(lo, hi))
    return a[:n].copy()

def _sparse_or_dense(d, a):
    "`a` with X dense or CSR at random (both are documented inputs)."
    if d(st.booleans()): a.X = sp.csr_matrix(a.X) if not sp.issparse(a.X) else a.X
    else: a.X = _dense(a)
    return a

SC_CASES = {  # case -> (function(draw, sc) -> (sc, extra impute kwargs), allowed outcomes)
    "valid": (lambda d, a: (a, {}), {"ok", "warning"}),
    "valid_counts_in_layer_log_in_X": (lambda d, a: _layer_case(a), {"ok", "warning"}),
    "integer_dtype": (lambda d, a: (_with_X(a, _dense(a).astype(d(st.sampled_from([np.int32, np.int64, np.uint16])))), {}),
                      {"ok", "warning"}),
    "all_zero_gene": (lambda d, a: (_zero_gene(d, a), {}), {"ok", "warning"}),
    "negative": (lambda d, a: (_set_one(d, a, -float(d.st_neg)), {}), ERR),
    "nan": (lambda d, a: (_set_one(d, a, np.nan), {}), ERR),
    "inf_or_beyond_float32": (lambda d, a: (_set_one(d, a, d(st.sampled_from([np.inf, -np.inf, 1e39, 1e300]))), {}), ERR),
    "log_normalised_as_counts": (lambda d, a: (_with_X(a, _lognorm(_dense(a).astype(np.float64)).astype(np.float32)), {}), ERR),
    "non_integer_below_20": (lambda d, a: (_with_X(a, _dense(a) / _dense(a).max() * d(st.floats(1.5, 19.9))), {}), ERR),
    "non_integer_counts": (lambda d, a: (_with_X(a, _dense(a) * d(st.sampled_from([1.5, 1.01, 2.5])) + (_dense(a) > 0) * 0.25), {}),
                           {"warning", "error"}),
    "zero_cells": (lambda d, a: (a[:0].copy(), {}), ERR),
    "zero_genes": (lambda d, a: (a[:, :0].copy(), {}), ERR),
    "too_few_cells": (lambda d, a: (_few(d, a, 1, 9), {}), ERR),
    "all_zero_cell": (lambda d, a: (_zero_cell(d, a), {}), ERR),
    "duplicated_genes": (lambda d, a: (_dup_names(d, a, "var"), {}), ERR),
    "duplicated_cells": (lambda d, a: (_dup_names(d, a, "obs"), {}), ERR),
    "empty_or_non_ascii_names": (lambda d, a: (_odd_names(d, a), {}), {"ok", "warning", "error"}),
    "object_dtype": (lambda d, a: (_with_X(a, _dense(a).astype(int).astype(str).astype(object)), {}), ERR),
    "bool_dtype": (lambda d, a: (_with_X(a, _dense(a) > 0), {}), ERR),
    "complex_dtype": (lambda d, a: (_with_X(a, _dense(a).astype(np.complex128)), {}), ERR),
    "ensembl_ids_vs_symbol_bulk": (lambda d, a: (_ensembl(a), {}), ERR),
    "few_shared_genes": (lambda d, a: (_ensembl(a, d(st.integers(1, 8))), {}), {"warning", "error"}),
    "missing_layer": (lambda d, a: (a, {"layer": d(st.sampled_from(["counts", "raw", "", "X"]))}), ERR),
}
SC_WARNINGS = {"few_shared_genes": r"genes are shared"}  # the documented warning of a case, if not WARN_COUNTS

def _layer_case(a):
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(_lognorm(_dense(a).astype(np.float64)).astype(np.float32))
    return a, {"layer": "counts"}

def _zero_gene(d, a):
    X = _dense(a).copy(); X[:, d(st.integers(0, X.shape[1] - 1))] = 0
    return _with_X(a, X)

def _zero_cell(d, a):
    X = _dense(a).copy(); X[d(st.integers(0, X.shape[0] - 1))] = 0
    return _with_X(a, X)

def _odd_names(d, a):
    axis = d(st.sampled_from(["obs", "var"]))
    names = list(a.obs_names if axis == "obs" else a.var_names)
    k = d(st.integers(0, len(names) - 1))
    names[k] = d(st.one_of(st.sampled_from(["", " "]), NON_ASCII)) + ("" if d(st.booleans()) else names[k])
    return _names(a, axis, names)

def _bulk_z(b):
    L = _lognorm(_dense(b).astype(np.float64))
    return (L - L.mean(1, keepdims=True)) / L.std(1, keepdims=True)

BULK_CASES = {  # case -> (function(draw, bulk) -> (bulk, bulk_scale), allowed outcomes)
    "negative_as_counts": (lambda d, b: (_set_one(d, b, -float(d.st_neg)), "counts"), ERR),
    "standardized_as_counts": (lambda d, b: (_with_X(b, _bulk_z(b).astype(np.float32)), "counts"), ERR),
    "negative_as_log1p_norm": (lambda d, b: (_with_X(b, _bulk_z(b).astype(np.float32)), "log1p_norm"), ERR),
    "counts_as_log": (lambda d, b: (b, d(st.sampled_from(["log1p_norm", "log_array_standardized"]))), ERR),
    "log1p_norm_as_counts": (lambda d, b: (_with_X(b, _lognorm(_dense(b).astype(np.float64))), "counts"), ERR),
    "nan_or_inf": (lambda d, b: (_set_one(d, b, d(st.sampled_from([np.nan, np.inf, -np.inf]))),
                                 d(st.sampled_from(["counts", "log_array_standardized"]))), ERR),
    "too_few_samples": (lambda d, b: (_few(d, b, 1, 9), "counts"), ERR),
    "zero_samples": (lambda d, b: (b[:0].copy(), "counts"), ERR),
    "zero_genes": (lambda d, b: (b[:, :0].copy(), "counts"), ERR),
    "duplicated_genes": (lambda d, b: (_dup_names(d, b, "var"), "counts"), ERR),
    "duplicated_samples": (lambda d, b: (_dup_names(d, b, "obs"), "counts"), ERR),
    "object_dtype": (lambda d, b: (_with_X(b, _dense(b).astype(int).astype(str).astype(object)), "counts"), ERR),
    "unknown_scale": (lambda d, b: (b, d(st.one_of(st.sampled_from(["fpkm", "minmax", "log", "COUNTS", ""]), st.text(max_size=8))
                                      .filter(lambda s: s not in ("counts", "log1p_norm", "log_array_standardized")))), ERR),
    "scale_conflicts_with_record": (lambda d, b: (b, "log_array_standardized"), ERR),  # uns records 'counts'
    "no_bulk": (lambda d, b: (None, "counts"), ERR),
    "all_zero_sample": (lambda d, b: (_zero_cell(d, b), "counts"), {"ok", "warning", "error"}),
}

def run_impute(test, case, adata, bulk, *, allow, kwargs=None, warn=WARN_COUNTS, copy=False):
    "Run tl.impute with the tiny config; record the outcome and whether adata or bulk changed."
    kwargs = dict(kwargs or {})
    before_a = adata.copy() if adata is not None else None
    before_b = bulk.copy() if bulk is not None else None
    key = kwargs.get("key_added", "scdtl")
    added = (key, f"{key}_dropout", f"X_{key}", f"{key}_imputed", "scdtl_scales")
    def changed():
        out = []
        if adata is not None:
            c = adata_changed(adata, before_a, added=() if copy else added)()
            if c: out.append(f"adata: {c}")
        if bulk is not None:
            c = adata_changed(bulk, before_b)()
            if c: out.append(f"bulk: {c}")
        return "; ".join(out) or None
    kwargs = {"config": TINY} | kwargs
    call = lambda: scdtl.tl.impute(adata, bulk, seed=0, copy=copy, progress=False, **kwargs)
    rec, result, exc = attempt(test, case, call, allow=allow, warn=warn, changed=changed)
    if rec["outcome"] in ("ok", "warning") and rec["bug"] is None:  # accepted: the documented output, all finite
        out = result if copy else adata
        try:
            layer, latent = out.layers[key], out.obsm[f"X_{key}"]
            values = layer.data if sp.issparse(layer) else np.asarray(layer)
            if layer.shape != out.shape or not np.isfinite(values).all() or not np.isfinite(latent).all():
                rec["bug"] = f"accepted, but layers[{key!r}] {layer.shape} / obsm latent hold NaN/inf or the wrong shape"
        except (KeyError, AttributeError) as e:
            rec["bug"] = f"accepted, but the documented output is missing ({type(e).__name__}: {e})"
    return rec, result, exc

@pytest.mark.parametrize("case", list(SC_CASES))
@fuzz(8)
@given(data=st.data())
def test_impute_bad_single_cell(case, data):
    """`scdtl.tl.impute(adata, bulk)` with a valid bulk and the single-cell data corrupted by `case`: negative, NaN,
    inf or beyond-float32 values, log-normalised or non-integer "counts", 0 cells, 0 genes, < 10 cells, an all-zero
    cell, duplicated / empty / non-ASCII names, object / bool / complex dtypes, Ensembl ids against symbol-named
    bulk, a missing layer; plus valid controls (dense / CSR, integer dtype, counts in a layer, an all-zero gene)."""
    d = _Draw(data)
    corrupt, allow = SC_CASES[case]
    a, bulk = fresh_pair()
    a, kwargs = corrupt(d, _sparse_or_dense(d, a))
    rec, _, _ = run_impute("impute_bad_single_cell", case, a, bulk, allow=allow, kwargs=kwargs, copy=d(st.booleans()),
                           warn=SC_WARNINGS.get(case, WARN_COUNTS))
    check(rec)

@pytest.mark.parametrize("case", list(BULK_CASES))
@fuzz(8)
@given(data=st.data())
def test_impute_bad_bulk(case, data):
    """`scdtl.tl.impute` with valid single-cell counts and the bulk panel corrupted by `case`: negative or standardized
    values declared counts, negative values declared log1p_norm, counts declared log, log1p_norm declared counts,
    NaN/inf, < 10 samples, 0 samples/genes, duplicated names, object dtype, an unknown scale, a scale contradicting the
    one the bulk records, no bulk at all, an all-zero sample."""
    d = _Draw(data)
    corrupt, allow = BULK_CASES[case]
    a, bulk = fresh_pair()
    bulk, scale = corrupt(d, _sparse_or_dense(d, bulk))
    if bulk is not None and case != "scale_conflicts_with_record" and scdtl.checks.get_scale(bulk) != scale:
        bulk.uns.pop("scdtl_scales", None)  # test the value checks, not the record (scale_conflicts_with_record does)
    recorded = None if bulk is None else scdtl.checks.get_scale(bulk)
    kwargs = {} if recorded == scale and d(st.booleans()) else {"bulk_scale": scale}  # rely on the record, or say it
    rec, _, _ = run_impute("impute_bad_bulk", case, a, bulk, allow=allow, kwargs=kwargs, copy=d(st.booleans()))
    check(rec)

@fuzz(25)
@given(data=st.data())
def test_impute_bad_arguments(data):
    """`scdtl.tl.impute` with valid data and a fuzzed `config` (unknown preset names), `bulk_scale` or `layer` value
    that is not documented (including the empty string): InputError before any training, inputs untouched."""
    d = _Draw(data)
    which = d(st.sampled_from(["config", "bulk_scale", "layer"]))
    value = d(st.one_of(st.sampled_from(["", " ", "Fast", "counts ", "log", "X"]), st.text(max_size=10))
              .filter(lambda s: s not in ("fast", "paper", "counts", "log1p_norm", "log_array_standardized")))
    a, bulk = fresh_pair()
    rec, _, _ = run_impute("impute_bad_arguments", f"{which}={value!r}", a, bulk, allow=ERR, kwargs={which: value})
    check(rec)

EDGE_VALUES = ("", " ", "Counts", "counts ", "none", None)

@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
@pytest.mark.parametrize("where", ["read:orientation", "read:scale", "read:kind", "read_bulk:scale", "impute:config",
                                   "impute:bulk_scale", "impute:layer"])
def test_argument_edge_values(where, value):
    """Every documented keyword of the readers and of impute with the same near-miss values (empty, blank, wrong
    case, trailing space, None): InputError, except None where None is the documented default (impute's bulk_scale
    and layer), which must then work."""
    func, arg = where.split(":")
    default_ok = func == "impute" and arg in ("bulk_scale", "layer") and value is None
    allow = {"ok", "warning"} if default_ok else ERR
    if func == "impute":
        a, bulk = fresh_pair()
        rec, _, _ = run_impute("argument_edge_values", f"{where}={value!r}", a, bulk, allow=allow, kwargs={arg: value})
    else:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path = write_table(Table(np.array([[1.0, 0.0], [0.0, 2.0]]), ["cell_0", "cell_1"], ["TP53", "CD3E"]), folder / "c.csv")
            before = tree_hashes(folder)
            fn = (lambda: scdtl.data.read(path, **{arg: value})) if func == "read" else \
                (lambda: scdtl.data.read_bulk(path, scale=value))
            rec, _, _ = attempt("argument_edge_values", f"{where}={value!r}", fn, allow=allow,
                                changed=files_changed(folder, before))
    check(rec)

# ----------------------------------------------------------------------------------------------------------------
# The command line: scdtl impute SC --bulk BULK --bulk-scale counts -o OUT.h5ad
# ----------------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def tiny_training():
    "Make every preset name resolve to TINY while the CLI runs, so a bug that lets garbage train costs a second."
    importlib.import_module("scdtl.api")
    import scdtl.config as cfg
    real = cfg.get_config
    def tiny(config="fast", **overrides): return TINY if isinstance(config, str) and config in cfg.CONFIGS else real(config, **overrides)
    mods = [m for n, m in list(sys.modules.items()) if n.startswith("scdtl") and getattr(m, "get_config", None) is real]
    for m in mods: m.get_config = tiny
    try: yield
    finally:
        for m in mods: m.get_config = real

def run_cli(argv) -> tuple[object, str, str, BaseException | None]:
    "`scdtl.cli.main(argv)` in-process: (exit code, stdout, stderr, exception that escaped main or None)."
    out, err = io.StringIO(), io.StringIO()
    old = signal.getsignal(signal.SIGTERM)
    code, exc = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), tiny_training(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = scdtl.cli.main(list(map(str, argv)))
    except SystemExit as e: code = e.code
    except Exception as e: exc = e  # noqa: BLE001 -- an exception escaping main is a traceback for the user
    finally: signal.signal(signal.SIGTERM, old)
    return code, out.getvalue(), err.getvalue(), exc

def cli_attempt(test, case, folder: Path, argv, out: Path, *, allow=ERR) -> dict:
    """Run the CLI on files in `folder` and record: InputError = exit 2 with one `scdtl impute: error: ...` line last
    on stderr and no traceback; any escaped exception or other exit code is a bug; so is an output file for bad input."""
    before = tree_hashes(folder)
    code, stdout, stderr, exc = run_cli(argv)
    lines = [l for l in stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("scdtl impute: error: ")]
    bug = None
    if exc is not None:
        outcome, detail = "other", f"{type(exc).__name__}: {exc} @ {_last_frames(exc)}"
    elif code == 2 and errors:
        outcome, detail = "InputError", errors[-1]
        if len(errors) != 1 or lines[-1] != errors[0] or "Traceback" in stderr:
            bug = f"exit 2 but stderr is not one error line: {stderr[-500:]!r}"
    elif code == 0: outcome, detail = "ok", stdout[-200:]
    else: outcome, detail = "other", f"exit code {code}; stderr {stderr[-500:]!r}"
    now = tree_hashes(folder)
    inputs_changed = sorted(k for k in before if before[k] != now.get(k))
    new = sorted(set(now) - set(before) - ({out.name} if outcome == "ok" else set()))
    modified = ", ".join(inputs_changed + [f"new file {n}" for n in new]) or None
    rec = record(test, case, outcome, allow, detail=detail, modified=modified, bug=bug)
    if exc is not None: rec["traceback"] = "".join(traceback.format_exception(exc))[-3000:]
    return rec

def _sc_table() -> Table:
    a, _ = _pair()
    return Table(_dense(a).astype(np.float64), [f"cell_{i:04d}" for i in range(a.n_obs)], list(a.var_names))

def _bulk_table() -> Table:
    _, b = _pair()
    return Table(_dense(b).astype(np.float64), list(b.obs_names), list(b.var_names))

CLI_SC_CASES = {  # case -> function(draw, table) -> table written as the single-cell file
    "negative": lambda d, t: _put(d, t, -float(d.st_neg)),
    "nan": lambda d, t: _put(d, t, np.nan),
    "string_value": lambda d, t: _put(d, t, d(NOT_NUMBERS)),
    "zero_cells": lambda d, t: replace(t, X=t.X[:0], cells=[]),
    "duplicated_cells": lambda d, t: _dup(d, t, "cells"),
    "duplicated_genes": lambda d, t: _dup(d, t, "genes"),
    "too_few_cells": lambda d, t: replace(t, X=t.X[:5], cells=t.cells[:5]),
    "log_normalised": lambda d, t: replace(t, X=_lognorm(t.X)),
    "ensembl_ids": lambda d, t: replace(t, genes=[f"ENSG{i + 1:011d}" for i in range(len(t.genes))]),
    "all_zero_cell": lambda d, t: _zero(d, t, 0),
}
CLI_FILE_DAMAGE = ("truncated", "empty", "missing", "random_bytes", "csv_named_h5ad")

@pytest.mark.parametrize("case", list(CLI_SC_CASES) + list(CLI_FILE_DAMAGE))
@fuzz(3)
@given(data=st.data())
def test_cli_bad_single_cell_file(case, data):
    """`scdtl impute SC --bulk BULK --bulk-scale counts -o OUT.h5ad --quiet` with a valid bulk CSV and a bad single-cell
    file (bad values or names written as CSV / h5ad / 10x .h5, or a truncated, empty, missing, random or mislabelled
    file): exit code 2, one `scdtl impute: error:` line, no traceback, no output file, inputs untouched."""
    d = _Draw(data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bulk = write_table(_bulk_table(), folder / "bulk.csv")
        t = _sc_table()
        if case in CLI_SC_CASES:
            fmt = d(st.sampled_from(["csv", "h5ad", "10x_h5"] if case != "string_value" else ["csv"]))
            sc_path = write(CLI_SC_CASES[case](d, t), folder, fmt)
        else:
            fmt = d(st.sampled_from(["csv.gz", "h5ad", "10x_h5"]))
            sc_path = write(t, folder, fmt)
            raw = sc_path.read_bytes()
            if case == "truncated": sc_path.write_bytes(raw[:d(st.integers(0, len(raw) - 1))])
            elif case == "empty": sc_path.write_bytes(b"")
            elif case == "missing": sc_path.unlink(); sc_path = folder / "missing" / sc_path.name
            elif case == "random_bytes": sc_path.write_bytes(d(st.binary(max_size=200)))
            else: sc_path.unlink(); sc_path = folder / "table.h5ad"; write_table(t, folder / "t.csv").rename(sc_path)
        out = folder / "out.h5ad"
        orientation = d(st.sampled_from(["auto", "cells_x_genes"]))
        rec = cli_attempt("cli_bad_single_cell_file", f"{case}/{fmt}", folder,
                          ["impute", sc_path, "--bulk", bulk, "--bulk-scale", "counts", "-o", out,
                           "--orientation", orientation, "--quiet"], out)
        if rec["outcome"] != "ok" and out.exists(): rec["bug"] = rec["bug"] or "output written for bad input"
    check(rec)

CLI_BULK_CASES = {  # case -> (function(draw, folder, bulk table) -> path, --bulk-scale)
    "negative_as_counts": (lambda d, f, t: write_table(_put(d, t, -float(d.st_neg)), f / "bulk.csv"), "counts"),
    "standardized_as_counts": (lambda d, f, t: write_table(replace(t, X=_bulk_z(ad.AnnData(t.X))), f / "bulk.csv"), "counts"),
    "counts_as_log": (lambda d, f, t: write_table(t, f / "bulk.csv"), "log1p_norm"),
    "string_value": (lambda d, f, t: write_table(_put(d, t, d(NOT_NUMBERS)), f / "bulk.tsv"), "counts"),
    "too_few_samples": (lambda d, f, t: write_table(replace(t, X=t.X[:4], cells=t.cells[:4]), f / "bulk.csv"), "counts"),
    "missing": (lambda d, f, t: f / "nope" / "bulk.csv", "counts"),
    "empty": (lambda d, f, t: _touch(f / "bulk.csv.gz"), "counts"),
    "truncated_gz": (lambda d, f, t: _cut(d, write_table(t, f / "bulk.csv.gz")), "counts"),
    "h5_named_csv": (lambda d, f, t: write_10x_h5(t, f / "x.h5").rename(f / "bulk.csv") or f / "bulk.csv", "counts"),
}

def _touch(p: Path) -> Path:
    p.write_bytes(b""); return p

def _cut(d, p: Path) -> Path:
    raw = p.read_bytes(); p.write_bytes(raw[:d(st.integers(0, len(raw) - 1))]); return p

@pytest.mark.parametrize("case", list(CLI_BULK_CASES))
@fuzz(3)
@given(data=st.data())
def test_cli_bad_bulk_file(case, data):
    """`scdtl impute` with a valid single-cell CSV and a bad bulk file: negative or standardized values declared counts,
    counts declared log1p_norm, strings, < 10 samples, missing / empty / truncated / mislabelled file: exit code 2,
    one error line, no output, inputs untouched."""
    d = _Draw(data)
    make, scale = CLI_BULK_CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sc_path = write_table(_sc_table(), folder / "sc.csv")
        bulk = make(d, folder, _bulk_table())
        out = folder / "out.h5ad"
        rec = cli_attempt("cli_bad_bulk_file", case, folder,
                          ["impute", sc_path, "--bulk", bulk, "--bulk-scale", scale, "-o", out, "--quiet"], out)
        if rec["outcome"] != "ok" and out.exists(): rec["bug"] = rec["bug"] or "output written for bad input"
    check(rec)

@fuzz(8)
@given(data=st.data())
def test_cli_bad_output(data):
    """`scdtl impute` with valid inputs but an output that is not .h5ad, or that is one of the input files: exit code
    2 before anything is read or written; the input files keep their bytes."""
    d = _Draw(data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sc_path = write_h5ad(_sc_table(), folder / "sc.h5ad")
        bulk = write_table(_bulk_table(), folder / "bulk.csv")
        case = d(st.sampled_from(["not_h5ad", "output_is_sc_input", "output_is_bulk_input"]))
        out = {"not_h5ad": folder / ("out" + d(st.sampled_from([".csv", ".h5", "", ".h5ad.gz", ".H5AD5"]))),
               "output_is_sc_input": sc_path, "output_is_bulk_input": bulk}[case]
        rec = cli_attempt("cli_bad_output", case, folder,
                          ["impute", sc_path, "--bulk", bulk, "--bulk-scale", "counts", "-o", out, "--quiet"], out)
    check(rec)

# ----------------------------------------------------------------------------------------------------------------
# Controls and the report
# ----------------------------------------------------------------------------------------------------------------

def test_input_error_is_one_class():
    "`scdtl.data.InputError` is `scdtl.checks.InputError`, a ValueError: callers catching either see every refusal."
    assert scdtl.data.InputError is InputError and issubclass(InputError, ValueError)

def test_cli_valid_control():
    """The harness itself: valid CSV inputs through `scdtl impute` (tiny model) exit 0 and write the output, so the
    exit-2 results above are refusals, not a broken command."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sc_path = write_table(_sc_table(), folder / "sc.csv")
        bulk = write_table(_bulk_table(), folder / "bulk.csv")
        out = folder / "out.h5ad"
        rec = cli_attempt("cli_valid_control", "valid", folder,
                          ["impute", sc_path, "--bulk", bulk, "--bulk-scale", "counts", "-o", out, "--quiet"], out,
                          allow=OK)
        if rec["outcome"] == "ok" and not out.exists(): rec["bug"] = "exit 0 but no output file"
    check(rec)

def test_zz_report():
    "Last: the counts of this run (written to /tmp/fuzz_report.json); fails while any input raised another exception or was modified."
    _write_report()
    s = _summary()
    t = s["total"]
    print(f"\nfuzz report ({REPORT_PATH}): {json.dumps(t)}")
    for b in s["distinct_bugs"]: print(f"  BUG {b['test']} / {b['case']}: {b['bug']}: {b['detail'][:300]}")
    assert t["other_exception"] == 0 and t["modified_input"] == 0, \
        f"{t['other_exception']} inputs raised another exception, {t['modified_input']} were modified; see {REPORT_PATH}"
