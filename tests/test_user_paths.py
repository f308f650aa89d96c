"""The package as a user meets it: the INSTALLED scdtl in fresh processes (README snippets, the CLI on every format,
save -> load, interrupts), never the notebooks' shared namespace."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from conftest import SCDTL, python, run, sha256, write_bulk, write_sc

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["h5ad", "10x_mtx", "10x_h5", "csv_cells_x_genes", "csv_genes_x_cells", "tsv_gz_genes_x_cells"]
TINY = ("from dataclasses import replace\nfrom scdtl.config import get_config, Architecture, Schedule, Losses\n"
        "TINY = get_config('fast', name='tiny', arch=Architecture(n_top_genes=100, encoder_hidden=(32,), n_latent=8),"
        " schedule=Schedule(max_epochs_pretrain=2, max_epochs_bulk=2, max_epochs_dtl=2, max_epochs_sc=2))\n"
        "TINY_UNET = get_config('unet', name='tiny_unet', arch=Architecture(n_top_genes=100, encoder_hidden=(32,), n_latent=8,"
        " unet_channels=(4, 8), n_identity=2), schedule=TINY.schedule)\n"
        "TINY_POISSON = get_config(TINY, name='tiny_poisson', losses=Losses(target='poisson'))\n"
        "TINY_WIDE = get_config(TINY, name='tiny_wide', arch=replace(TINY.arch, other_genes=True))\n")


def tiny_pair_code(folder: Path, pair) -> str:
    "Write `pair` as sc.h5ad and bulk.h5ad into `folder`; the code that reads them as `a`, `b` beside a tiny config."
    sc, bulk = pair
    sc.write_h5ad(folder / "sc.h5ad"); bulk.write_h5ad(folder / "bulk.h5ad")
    return TINY + "import anndata as ad, numpy as np, scdtl\na, b = ad.read_h5ad('sc.h5ad'), ad.read_h5ad('bulk.h5ad')\n"


MODES = {"impute": ("log1p_norm", "imputed"), "denoise": ("expected_counts", "modelled")}  # mode -> scale, var flag


def check_output(path: Path, n_obs: int, n_vars: int, key: str = "scdtl", mode: str = "impute"):
    "An imputed (or denoised) h5ad reads back in a fresh process with every field `tl.impute` (`tl.denoise`) documents."
    scale, flag = MODES[mode]
    r = python(f"""
import anndata as ad, json
a = ad.read_h5ad({str(path)!r})
u = a.uns[{key!r}]
print(json.dumps(dict(shape=list(a.shape), layer=list(a.layers[{key!r}].shape), latent=list(a.obsm["X_{key}"].shape),
    n_imputed=int(a.var["{key}_{flag}"].sum()), scale=u["scale"], mode=u["mode"], genes=len(u["genes"]) + len(u.get("other_genes", [])),
    scales=a.uns["scdtl_scales"]["layers"][{key!r}], hist=len(u["history"]["epoch"]),
    hidden=[int(h) for h in u["config"]["arch"]["encoder_hidden"]])))
""", cwd=path.parent)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["shape"] == d["layer"] == [n_obs, n_vars]
    assert d["latent"][0] == n_obs and d["n_imputed"] == d["genes"] > 0
    assert d["scale"] == d["scales"] == scale and d["mode"] == mode and d["hist"] > 0 and d["hidden"]


# ---------------------------------------------------------------- the package stands on its own imports

def test_pyflakes_clean():
    "ruff's pyflakes rules on scdtl/: no module leans on a name only a notebook cell defined (the SCDTL.save bug)."
    r = run([str(Path(sys.executable).parent / "ruff"), "check", "--select", "F", "scdtl"], cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_checks_module_is_light():
    "`scdtl.checks` (InputError and the input checks) imports neither scanpy, pooch nor torch."
    r = python("import sys, scdtl.checks; print([m for m in ('scanpy', 'pooch', 'torch') if m in sys.modules])", cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_curated_namespaces():
    "`scdtl.tl` and `scdtl.pp` hold their tools and nothing else (no numpy, no None placeholders), like scanpy's."
    r = python("""
import scdtl
for ns in (scdtl.tl, scdtl.pp):
    public = sorted(n for n in vars(ns) if not n.startswith('_') and n != 'annotations')
    assert public == sorted(ns.__all__), (ns.__name__, public)
    assert all(callable(getattr(ns, n)) for n in ns.__all__)
print(scdtl.tl.__all__, scdtl.pp.__all__)
""", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "impute" in r.stdout and "observed" in r.stdout


# ---------------------------------------------------------------- README, as written

def readme_blocks(lang: str) -> list[str]:
    "The fenced `lang` code blocks of README.md, in order."
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_python_snippets(tmp_path, pair):
    "Every Python block of README.md, run as written in one fresh process, on the files its first block reads."
    sc, bulk = pair
    sc.write_h5ad(tmp_path / "cells.h5ad"); write_bulk(bulk, "counts", tmp_path).rename(tmp_path / "bulk.csv")
    before = sha256(tmp_path / "cells.h5ad")
    code = "\n".join(readme_blocks("python"))
    assert "scdtl.tl.impute" in code and "SCDTL.load" in code
    r = python(code + "\nadata.write_h5ad('after_readme.h5ad')\nprint('README OK')", cwd=tmp_path, timeout=900)
    assert r.returncode == 0 and "README OK" in r.stdout, r.stderr[-3000:]
    assert sha256(tmp_path / "cells.h5ad") == before
    check_output(tmp_path / "after_readme.h5ad", sc.n_obs, sc.n_vars)


def test_readme_shell_impute(tmp_path, pair):
    "The README's `scdtl impute / denoise / datasets / fit` lines and its `torchrun` line, run as written, in order."
    sc, bulk = pair
    sc.write_h5ad(tmp_path / "cells.h5ad"); write_bulk(bulk, "counts", tmp_path).rename(tmp_path / "bulk.csv")
    before = sha256(tmp_path / "cells.h5ad")
    lines = [l.split("#")[0].split() for b in readme_blocks("sh") for l in b.splitlines()]
    cmds = [l for l in lines if l[:2] in (["scdtl", "impute"], ["scdtl", "denoise"], ["scdtl", "datasets"], ["scdtl", "fit"])
            or l[:1] == ["torchrun"]]
    assert [c[1] for c in cmds if c[0] == "scdtl"] == ["impute", "datasets", "denoise", "fit", "impute"] and len(cmds) == 6
    for cmd in cmds:
        exe = [SCDTL, *cmd[1:]] if cmd[0] == "scdtl" else [str(Path(sys.executable).parent / "torchrun"), *cmd[1:]]
        r = run([*exe, *(["--quiet"] if {"impute", "denoise", "fit"} & set(cmd[:5]) else [])], cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    check_output(tmp_path / "imputed.h5ad", sc.n_obs, sc.n_vars)
    check_output(tmp_path / "denoised.h5ad", sc.n_obs, sc.n_vars, key="scdtl_denoised", mode="denoise")
    r = python("import anndata as ad; a = ad.read_h5ad('imputed_chunks.h5ad'); print(a.n_obs, a.X.dtype, a.uns['scdtl']['mode'])",
               cwd=tmp_path)
    assert r.stdout.split() == [str(sc.n_obs), "float16", "impute"], r.stderr
    assert sha256(tmp_path / "cells.h5ad") == before


# ---------------------------------------------------------------- the CLI on every format the data layer reads

@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_every_format(tmp_path, pair, fmt):
    "`scdtl impute` on each single-cell format (bulk as counts) writes an h5ad that reads back; inputs unchanged."
    sc, bulk = pair
    src, b = write_sc(sc, fmt, tmp_path), write_bulk(bulk, "counts", tmp_path)
    digests = {p: sha256(p) for p in [b, *([src] if src.is_file() else src.iterdir())]}
    r = run([SCDTL, "impute", str(src), "--bulk", str(b), "--bulk-scale", "counts", "-o", str(tmp_path / "out.h5ad"), "--quiet"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    check_output(tmp_path / "out.h5ad", sc.n_obs, sc.n_vars)
    assert {p: sha256(p) for p in digests} == digests


def test_cli_bulk_on_log_scale(tmp_path, pair):
    "A bulk CSV already on the log1p_norm scale, declared so; declared as counts it is refused with the fix."
    sc, bulk = pair
    src, b = write_sc(sc, "h5ad", tmp_path), write_bulk(bulk, "log1p_norm", tmp_path)
    out = tmp_path / "out.h5ad"
    bad = run([SCDTL, "impute", str(src), "--bulk", str(b), "--bulk-scale", "counts", "-o", str(out), "--quiet"], cwd=tmp_path)
    assert bad.returncode == 2 and "log-normalised" in bad.stderr and "Traceback" not in bad.stderr and not out.exists()
    r = run([SCDTL, "impute", str(src), "--bulk", str(b), "--bulk-scale", "log1p_norm", "-o", str(out), "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    check_output(out, sc.n_obs, sc.n_vars)


def test_cli_refuses_to_overwrite_its_input(tmp_path, pair):
    "`-o` naming the input is refused before any work, and the input is unchanged."
    sc, bulk = pair
    src, b = write_sc(sc, "h5ad", tmp_path), write_bulk(bulk, "counts", tmp_path)
    before = sha256(src)
    r = run([SCDTL, "impute", str(src), "--bulk", str(b), "-o", str(src), "--quiet"], cwd=tmp_path)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr and sha256(src) == before


def test_cli_denoise(tmp_path, pair):
    "`scdtl denoise` on an h5ad writes layers['scdtl_denoised'] (expected counts) that reads back; inputs unchanged."
    sc, bulk = pair
    src, b = write_sc(sc, "h5ad", tmp_path), write_bulk(bulk, "counts", tmp_path)
    digests = {p: sha256(p) for p in (src, b)}
    out = tmp_path / "denoised.h5ad"
    r = run([SCDTL, "denoise", str(src), "--bulk", str(b), "-o", str(out), "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "expected counts" in r.stdout and "genes modelled" in r.stdout
    check_output(out, sc.n_obs, sc.n_vars, key="scdtl_denoised", mode="denoise")
    assert {p: sha256(p) for p in digests} == digests
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    bad = run([SCDTL, "denoise", str(src), "--bulk", str(b), "-o", str(src), "--quiet"], cwd=tmp_path)
    assert bad.returncode == 2 and "refusing to overwrite" in bad.stderr and sha256(src) == digests[src]


# ---------------------------------------------------------------- h5ad / zarr, save -> load

def test_tl_impute_writes_h5ad_and_zarr(tmp_path, pair):
    "After `tl.impute`, `write_h5ad` and `write_zarr` work and read back identical (the tuple-in-uns bug)."
    r = python(tiny_pair_code(tmp_path, pair) + """
scdtl.tl.impute(a, b, config=TINY, progress=False)
a.write_h5ad('a.h5ad'); a.write_zarr('a.zarr')
for r in (ad.read_h5ad('a.h5ad'), ad.read_zarr('a.zarr')):
    assert np.array_equal(r.layers['scdtl'].toarray(), a.layers['scdtl'].toarray())
    assert np.array_equal(r.obsm['X_scdtl'], a.obsm['X_scdtl'])
    assert list(r.uns['scdtl']['genes']) == a.uns['scdtl']['genes']
    assert list(r.uns['scdtl']['config']['arch']['encoder_hidden']) == [32]
print('ROUNDTRIP OK')
""", cwd=tmp_path)
    assert r.returncode == 0 and "ROUNDTRIP OK" in r.stdout, r.stderr[-3000:]


def test_tl_impute_zeros_and_dropout_layer(tmp_path, pair):
    "`tl.impute(zeros=t)` keeps the zeros the dropout head calls true; the probability layer round-trips through h5ad."
    r = python(tiny_pair_code(tmp_path, pair) + """
import scipy.sparse as sp
fill = scdtl.tl.impute(a, b, config=TINY, progress=False, copy=True, zeros='fill')
half = scdtl.tl.impute(a, b, config=TINY, progress=False, copy=True, zeros=0.5)
half.write_h5ad('h.h5ad'); r = ad.read_h5ad('h.h5ad')
P, Y, F = r.layers['scdtl_dropout'], r.layers['scdtl'].toarray(), fill.layers['scdtl'].toarray()
assert sp.issparse(P) and P.shape == r.shape and r.uns['scdtl_scales']['layers']['scdtl_dropout'] == 'probability'
P = P.toarray(); assert ((P >= 0) & (P <= 1)).all() and r.uns['scdtl']['zeros'] == '0.5'
m = r.var['scdtl_imputed'].to_numpy(bool); zero = a.X.toarray() == 0
assert P[:, ~m].max() == 0 and P[~zero].max() == 0                   # only observed zeros of modelled genes
keep = zero & m[None] & (P < 0.5)
assert keep.sum() > 0 and Y[keep].max() == 0 and (F[keep] > 0).mean() > 0.9   # kept at zero; 'fill' filled them
assert np.array_equal(Y[~keep], F[~keep])                            # everything else as with 'fill'
try: scdtl.tl.impute(a, b, config=TINY, progress=False, zeros='keep'); raise SystemExit('accepted a bad zeros')
except scdtl.checks.InputError as e: assert 'zeros must be' in str(e)
print('ZEROS OK')
""", cwd=tmp_path)
    assert r.returncode == 0 and "ZEROS OK" in r.stdout, r.stderr[-3000:]


def test_cli_impute_zeros(tmp_path, pair):
    "`scdtl impute --zeros expected` runs; a bad --zeros is refused by the parser with the fix, before any work."
    sc, bulk = pair
    src, b = write_sc(sc, "h5ad", tmp_path), write_bulk(bulk, "counts", tmp_path)
    out = tmp_path / "exp.h5ad"
    r = run([SCDTL, "impute", str(src), "--bulk", str(b), "-o", str(out), "--zeros", "expected", "--quiet"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    check_output(out, sc.n_obs, sc.n_vars)
    bad = run([SCDTL, "impute", str(src), "--bulk", str(b), "-o", str(tmp_path / "x.h5ad"), "--zeros", "2"], cwd=tmp_path)
    assert bad.returncode == 2 and "zeros must be" in bad.stderr and not (tmp_path / "x.h5ad").exists()


def test_tl_denoise_writes_expected_counts(tmp_path, pair):
    "`tl.denoise` writes expected counts at the observed depth: h5ad round trip, scale record, unmodelled genes exact."
    code = tiny_pair_code(tmp_path, pair)
    before = sha256(tmp_path / "sc.h5ad")
    r = python(code + """
import scipy.sparse as sp
assert 'denoise' in scdtl.tl.__all__
x0 = a.X.copy()
scdtl.tl.denoise(a, b, config=TINY, progress=False)
assert (a.X != x0).nnz == 0                                          # .X untouched
a.write_h5ad('d.h5ad'); r = ad.read_h5ad('d.h5ad')
L, counts = r.layers['scdtl_denoised'], ad.read_h5ad('sc.h5ad').X.toarray()
assert sp.issparse(L) and L.dtype == np.float32 and L.shape == r.shape
assert np.array_equal(L.toarray(), a.layers['scdtl_denoised'].toarray())
assert r.uns['scdtl_scales']['layers']['scdtl_denoised'] == 'expected_counts'
u = r.uns['scdtl_denoised']; assert (u['mode'], u['scale']) == ('denoise', 'expected_counts')
m = r.var['scdtl_denoised_modelled'].to_numpy(bool)
assert 0 < m.sum() < r.n_vars and sorted(r.var_names[m]) == sorted(u['genes'])
assert (np.asarray(L.sum(1)).ravel() > 0).all()                      # every cell keeps a positive depth
assert np.array_equal(L[:, ~m].toarray(), counts[:, ~m])             # unmodelled genes: the input counts, exactly
D = L[:, m].toarray()
assert (D >= 0).all() and (D[counts[:, m] == 0] > 0).mean() > 0.5   # zeros re-estimated as expected counts
assert not np.array_equal(D, np.round(D))                            # expected counts, not whole numbers
print('DENOISE OK')
""", cwd=tmp_path)
    assert r.returncode == 0 and "DENOISE OK" in r.stdout, r.stderr[-3000:]
    assert sha256(tmp_path / "sc.h5ad") == before


def test_tl_denoise_covers_other_genes(tmp_path, pair):
    "With the other-genes head `tl.denoise` also estimates every gene detected in >= 3 cells; the record names them."
    r = python(tiny_pair_code(tmp_path, pair) + """
scdtl.tl.denoise(a, b, config=TINY_WIDE, progress=False)
a.write_h5ad('d.h5ad'); r = ad.read_h5ad('d.h5ad')
u, L, counts = r.uns['scdtl_denoised'], r.layers['scdtl_denoised'].toarray(), ad.read_h5ad('sc.h5ad').X.toarray()
m, other = r.var['scdtl_denoised_modelled'].to_numpy(bool), r.var_names.isin(list(u['other_genes']))
assert other.sum() > 100 and not (other & r.var_names.isin(list(u['genes']))).any()
assert np.array_equal(m, other | r.var_names.isin(list(u['genes'])))
assert ((counts[:, other] > 0).sum(0) >= 3).all() and ((counts[:, ~m] > 0).sum(0) < 3).all()
assert np.array_equal(L[:, ~m], counts[:, ~m])                         # genes seen in fewer than 3 cells: copied
D = L[:, other]; assert (D > 0).all() and not np.array_equal(D, counts[:, other])  # expected counts everywhere
print('WIDE OK')
""", cwd=tmp_path)
    assert r.returncode == 0 and "WIDE OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.parametrize("config", ["TINY", "TINY_UNET", "TINY_POISSON", "TINY_WIDE"])
def test_save_load_in_a_new_process(tmp_path, pair, config):
    """A model saved in one process, loaded in another, imputes identically (the missing-import bug of SCDTL.save);
    with the gene-aware U-Net, its gene order comes back with the weights."""
    fit = python(tiny_pair_code(tmp_path, pair) + f"""
m = scdtl.SCDTL({config}, progress=False).fit(a, b)
m.save('model.pt'); np.save('y.npy', m.impute(a, zeros=0.5).toarray()); np.save('z.npy', m.latent(a)); np.save('d.npy', m.denoise(a))
if {config} is TINY_UNET: np.save('order.npy', m.net.unet.order.numpy()); assert (m.net.unet.order.numpy() != np.arange(len(m.genes))).any()
""", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    load = python("""
import anndata as ad, numpy as np, scdtl
m = scdtl.SCDTL.load('model.pt', progress=False)
a = ad.read_h5ad('sc.h5ad')
assert m.is_fitted and np.array_equal(m.impute(a, zeros=0.5).toarray(), np.load('y.npy')) and np.array_equal(m.latent(a), np.load('z.npy'))
assert np.array_equal(m.denoise(a), np.load('d.npy'))                 # the other genes' head comes back too
import os
if os.path.exists('order.npy'): assert np.array_equal(m.net.unet.order.numpy(), np.load('order.npy'))
print('LOAD OK')
""", cwd=tmp_path)
    assert load.returncode == 0 and "LOAD OK" in load.stdout, load.stderr[-3000:]


def test_poisson_target_outputs(tmp_path, pair):
    """The Poisson target (`Losses(target='poisson')`): 'fill' puts into each zero the value it would show if detected,
    at least one molecule of its own cell (log1p(1e4 / total)); 'denoise' gives the expected value, which may be below
    it; `denoise(at_depth=True)` is P(detected) x that value at each cell's depth (a model on the MSE target refuses
    it); by default denoise returns the posterior given each entry's count, moved from that prior toward k / s;
    observed values are kept; the h5ad records the target."""
    r = python(tiny_pair_code(tmp_path, pair) + """
m = scdtl.SCDTL(TINY_POISSON, progress=False).fit(a, b)
obs = scdtl.preprocess.observed(a)
cols = [list(a.var_names).index(g) for g in m.genes]
X = obs.layers['log1p_norm'][:, cols].toarray()
fill = m.impute(a, genes=m.genes, zeros='fill').toarray(); den = m.denoise(a, genes=m.genes, posterior=False)
one = np.log1p(1e4 / obs.obs['scdtl_total'].to_numpy())[:, None] * np.ones_like(X)
z = X == 0
assert z.sum() > 1000 and (fill[z] >= one[z] - 1e-5).all(), (fill[z] - one[z]).min()
low = z & (den < one)                                                # expected value below one molecule
assert low.sum() > 100 and (fill[low] > den[low]).all() and np.array_equal(fill[~z], X[~z])
dep = m.denoise(a, genes=m.genes, at_depth=True, posterior=False)    # the mean log at each cell's depth
size = obs.obs['scdtl_total'].to_numpy()[:, None] / 1e4 * np.ones_like(X)
assert (dep <= den + 1e-6).all() and np.allclose(dep[z], -np.expm1(-np.expm1(den[z]) * size[z]) * fill[z], atol=1e-5)
post = m.denoise(a, genes=m.genes)                                   # the default: the posterior given k
k = obs.X[:, cols].toarray(); mu, pm = np.expm1(den), np.expm1(post)
assert ((pm - mu) * (k / size - mu) >= -1e-4).all() and (pm != mu).mean() > 0.9   # moved from the prior toward k / s
from scdtl.checks import InputError
try: scdtl.SCDTL(get_config(TINY, losses=Losses()), progress=False).fit(a, b).denoise(a, at_depth=True); raise SystemExit('no error')
except InputError as e: assert 'Poisson target' in str(e)                # Losses(): the MSE target
tl = scdtl.tl.impute(a, b, config=TINY_POISSON, progress=False, copy=True)
tl.write_h5ad('out.h5ad'); back = ad.read_h5ad('out.h5ad')
assert back.uns['scdtl']['config']['losses']['target'] == 'poisson'
print('POISSON OK')
""", cwd=tmp_path)
    assert r.returncode == 0 and "POISSON OK" in r.stdout, r.stderr[-3000:]


# ---------------------------------------------------------------- interrupted runs leave nothing behind

def _default_signals():
    "In the child: SIGINT and SIGTERM at their defaults and unblocked, whatever the test worker's process did to them."
    for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_leaves_nothing(tmp_path, pair, sig):
    "`scdtl impute` stopped mid-training exits 128+signal, writes no output (nor a temporary file), changes no input."
    sc, bulk = pair
    src, b = write_sc(sc, "h5ad", tmp_path), write_bulk(bulk, "counts", tmp_path)
    digests = {p: sha256(p) for p in (src, b)}
    out = tmp_path / "out" / "imputed.h5ad"; out.parent.mkdir()
    env_cmd = [SCDTL, "impute", str(src), "--bulk", str(b), "-o", str(out), "--config", "paper"]  # paper: long training
    p = subprocess.Popen(env_cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_signals)
    seen, t0 = "", time.time()
    while "bulk imputer" not in seen and time.time() - t0 < 300:     # tqdm's bar of phase (i): training has begun
        seen += p.stderr.read(1) if p.poll() is None else ""
        if p.poll() is not None: break
    assert p.poll() is None, f"finished before it could be interrupted: {seen[-2000:]}"
    status = [l for l in Path(f"/proc/{p.pid}/status").read_text().splitlines() if l.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    p.send_signal(sig)
    try: _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired: p.kill(); p.communicate(); raise AssertionError(f"still running 120 s after {sig!r}: {status}")
    assert p.returncode == 128 + sig, (p.returncode, err[-2000:])
    assert "interrupted; no output was written" in err
    assert list(out.parent.iterdir()) == [] and {q: sha256(q) for q in digests} == digests


@pytest.mark.skipif(not os.environ.get("SCDTL_DATA_DIR"), reason="needs the real data ($SCDTL_DATA_DIR)")
def test_cli_bench_grid_every_protocol(tmp_path):
    "`scdtl bench grid` (smoke profile, two floors) writes held-out, MCV (with its controls) and null rows, memory > 0."
    r = run([SCDTL, "bench", "grid", "--profile", "smoke", "--methods", "no imputation,gene mean", "--workers", "2",
             "--quiet", "--out", str(tmp_path)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    grid = pd.read_csv(tmp_path / "bench_grid_smoke.csv")
    assert set(grid.task) == {"heldout", "mcv", "false_signals"} and "error" not in grid
    mcv = grid[grid.task == "mcv"].set_index("method")
    assert mcv.loc["control: no denoising", "mcv_mse_norm"] == 0 and mcv.loc["control: perfect denoising", "mcv_mse_norm"] == 1
    assert abs(mcv.loc["no imputation", "mcv_mse_norm"]) < 1e-3
    null = grid[grid.task == "false_signals"]
    assert (null[null.method == "no imputation"].spurious_corr == 0).all() and set(null.null) == {"one population", "permuted"}
    assert (grid.dropna(subset=["seconds"]).peak_mib > 0).all()   # each method's own fresh worker


def test_cli_bench_all_refuses_narrowing(tmp_path):
    "`scdtl bench all` runs a profile as defined: a narrowing option exits 2 with the commands that narrow, no CSV."
    r = run([SCDTL, "bench", "all", "--profile", "smoke", "--datasets", "cellbench_dropseq_3cl", "--out", str(tmp_path)],
            cwd=tmp_path)
    assert r.returncode == 2 and "bench grid" in r.stderr and "bench ablation" in r.stderr, r.stderr[-2000:]
    assert list(tmp_path.glob("*.csv")) == []


def test_umap_kernels_compiled_once(tmp_path, monkeypatch):
    "The kNN graph's UMAP kernels are compiled by the first fresh process and loaded from numba's cache by the next."
    code = """
import numpy as np, scdtl.metrics
from umap import umap_
scdtl.metrics.leiden_clusters(np.random.default_rng(0).random((60, 20)), seed=0)
print([sum(k.stats.cache_hits.values()) for k in (umap_.smooth_knn_dist, umap_.compute_membership_strengths)])
"""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))  # the fresh processes inherit it
    first, second = (python(code, cwd=ROOT, timeout=300) for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    hits = lambda r: json.loads(r.stdout.strip().splitlines()[-1])  # cache hits per kernel
    assert hits(first) == [0, 0] and all(h > 0 for h in hits(second)), (first.stdout, second.stdout)
    assert len(list((tmp_path / "numba").rglob("*.nbi"))) >= 2
