"""The atlas-scale harness from outside: the INSTALLED scdtl.scale in fresh processes (a synthetic atlas written and read
back as a user would, its memory bounded by a chunk, `measure` reading a child's own peak)."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("SCDTL_DATA_DIR") or next((str(p) for p in [ROOT.parent / "shared" / "data"] if p.is_dir()), "")
needs_data = pytest.mark.skipif(not DATA, reason="needs the real data ($SCDTL_DATA_DIR or ../shared/data)")


def child(code: str, cwd: Path, timeout: int = 300) -> dict:
    "Run `code` in a fresh Python (one thread, the real data folder); the JSON it prints last."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SCDTL_DATA_DIR": DATA}
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@needs_data
def test_write_synthetic_reads_back(tmp_path):
    "3,000 cells x 2,000 genes written in chunks read back (backed and in memory) with the names, types and counts made."
    d = child("""
import json, numpy as np, anndata as ad, scdtl.scale as s
p = s.write_synthetic("atlas.h5ad", 3000, n_genes=2000, chunk_size=700, seed=3)
a = ad.read_h5ad(p, backed="r")
sums = [float(a.X[i:i + 500].sum()) for i in range(0, 3000, 500)]                  # backed, chunk by chunk
made = [float(c.X.sum()) for c in s.synthetic_atlas(3000, n_genes=2000, chunk=500, seed=3)]
m = ad.read_h5ad(p)
bulk = set(s.real_symbols()[0])
print(json.dumps(dict(shape=list(a.shape), sums=sums, made=made, names=list(m.obs_names[[0, -1]]),
    unique=bool(m.var_names.is_unique), in_bulk=int(m.var_names.isin(list(bulk)).sum()), types=int(m.obs.cell_type.nunique()),
    integer=bool((m.X.data == np.round(m.X.data)).all() and (m.X.data > 0).all()), dtype=str(m.X.dtype),
    params=m.uns["scdtl_synthetic"]["n_cells"], left=sorted(x.name for x in p.parent.iterdir()))))
""", tmp_path)
    assert d["shape"] == [3000, 2000] and d["dtype"] == "float32" and d["integer"]
    assert d["sums"] == d["made"] and min(d["sums"]) > 0                              # the same counts, whatever the chunks
    assert d["names"] == ["cell00000000", "cell00002999"] and d["unique"] and d["types"] == 8
    assert d["in_bulk"] == 2000                                                       # few genes: all from the bulk panel
    assert d["params"] == 3000 and d["left"] == ["atlas.h5ad"]                        # no temporary file left


@needs_data
def test_write_memory_is_bounded_by_a_chunk(tmp_path):
    "Writing 10x more cells does not raise the writer's peak memory: the atlas never sits in memory."
    d = child("""
import json, re, os, scdtl.scale as s
hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
s.write_synthetic("warm.h5ad", 1000, n_genes=2000, chunk_size=1000)               # data sets read, code warm
try: open("/proc/self/clear_refs", "w").write("5")                                  # restart the high-water mark
except OSError: print(json.dumps(dict(skip=True))); raise SystemExit
before = hwm()
p = s.write_synthetic("big.h5ad", 30000, n_genes=2000, chunk_size=1000)
print(json.dumps(dict(skip=False, grew=hwm() - before, mib=os.path.getsize(p) / 2**20)))
""", tmp_path)
    if d["skip"]: pytest.skip("cannot reset the memory high-water mark here")
    assert d["mib"] > 200, d                                                          # the file is big ...
    assert d["grew"] < 100, d                                                         # ... the writer's memory is not


def test_measure_reads_the_child_peak(tmp_path):
    "`measure` reports a child's own peak (200 MiB allocated: above 200), not its parent's, and what it reported."
    d = child("""
import json, numpy as np
from scdtl.scale import measure
big = np.ones(2**26)                                                                # the parent holds 512 MiB
r = measure("import numpy as np\\nx = np.ones(200 * 2**17)\\n_report(n=len(x))", threads=1)
small = measure("pass")
print(json.dumps(dict(peak=r["peak_mib"], status=r["status"], result=r["result"], small=small["peak_mib"])))
""", tmp_path)
    assert d["status"] == "ok" and d["result"] == {"n": 200 * 2**17}
    assert 200 < d["peak"] < 320, d
    assert d["small"] < 100, d                                                        # not the parent's 512 MiB


def test_measure_timeout_and_error(tmp_path):
    "A child past its timeout is killed and reads 'timed out' (keeping what it reported); a failing one gives its error."
    d = child("""
import json
from scdtl.scale import measure
slow = measure("import time\\n_report(fit=dict(seconds=1.0))\\ntime.sleep(60)", timeout=2)
bad = measure("raise MemoryError('too big')")
print(json.dumps(dict(slow=[slow["status"], slow["result"], slow["seconds"] < 20], bad=[bad["status"], bad["error"]])))
""", tmp_path)
    assert d["slow"] == ["timed out", {"fit": {"seconds": 1.0}}, True]
    assert d["bad"] == ["error", "MemoryError: too big"]


@needs_data
def test_run_scale_data_rows(tmp_path):
    "`run_scale` with no method writes the atlas in a fresh process and reports it; a second run reuses the file."
    d = child("""
import json, scdtl.scale as s
t = s.run_scale((400,), work_dir="w", methods=(), n_genes=500, progress=False)
f = next(p for p in __import__("pathlib").Path("w").iterdir() if p.suffix == ".h5ad")
mtime = f.stat().st_mtime_ns
again = s.run_scale((400,), work_dir="w", methods=(), n_genes=500, progress=False)
print(json.dumps(dict(rows=t[["method", "n_cells", "stage", "status"]].values.tolist(), cols=list(t.columns),
    peak=float(t.peak_mib[0]), secs=float(t.seconds[0]), kept=f.stat().st_mtime_ns == mtime, note=again.note[0])))
""", tmp_path)
    assert d["rows"] == [["(data)", 400, "write", "ok"]]
    assert d["cols"][:8] == ["method", "n_cells", "n_genes", "stage", "seconds", "peak_mib", "cells_per_s", "status"]
    assert d["peak"] > 50 and d["secs"] > 0 and d["kept"] and d["note"].startswith("kept"), d
