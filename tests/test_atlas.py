"""Atlas-scale user paths from outside, in fresh processes: a fit killed with SIGKILL resumes to the same weights,
data-parallel fitting through torchrun (gloo, 2 CPU processes) agrees with one process, and a saved model imputes
an .h5ad chunk by chunk into a new file."""
import json, os, signal, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from conftest import SCDTL, python, run, sha256
from test_user_paths import TINY

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "A 240-cell simulated pair written as sc.h5ad and bulk.h5ad."
    from scdtl.simulate import paired
    d = tmp_path_factory.mktemp("atlas")
    sc, bulk = paired(n_cells=240, n_genes=300, n_bulk=40, seed=0)
    sc.write_h5ad(d / "sc.h5ad"); bulk.write_h5ad(d / "bulk.h5ad")
    return d


FIT = TINY + """import anndata as ad, scdtl
from dataclasses import replace
cfg = replace(TINY, schedule=replace(TINY.schedule, max_epochs_pretrain=4, max_epochs_bulk=3, max_epochs_dtl=6, max_epochs_sc=4))
m = scdtl.SCDTL(cfg, progress=False)
m.fit(ad.read_h5ad('sc.h5ad'), ad.read_h5ad('bulk.h5ad'), checkpoint_dir={ckpt!r}, checkpoint_every=1)
m.save({out!r})
"""
KILL = """import os, signal, scdtl.checkpoint as ck
_save = ck.Checkpointer.save
def save(self, phase, state):                      # SIGKILL (no cleanup) right after a mid-phase (ii) checkpoint
    _save(self, phase, state)
    if phase.startswith('(ii)') and not state['done'] and state['steps'] == 7: os.kill(os.getpid(), signal.SIGKILL)
ck.Checkpointer.save = save
"""


def test_fit_killed_mid_phase_resumes_to_the_same_weights(files):
    "Killed in the middle of phase (ii), the same command resumes there and ends with the uninterrupted run's weights."
    r = python(KILL + FIT.format(ckpt="ck", out="killed.pt"), cwd=files)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not (files / "killed.pt").exists()
    mid = torch.load(files / "ck" / "ii_domain_adaptation.pt", weights_only=True)
    assert not mid["done"] and mid["steps"] == 7 and not (files / "ck" / "iii_sc_imputation.pt").exists()
    r = python(FIT.format(ckpt="ck", out="resumed.pt"), cwd=files); assert r.returncode == 0, r.stderr
    r = python(FIT.format(ckpt=None, out="whole.pt"), cwd=files); assert r.returncode == 0, r.stderr
    a, b = (torch.load(files / f, weights_only=True) for f in ("resumed.pt", "whole.pt"))
    assert a["net_state"].keys() == b["net_state"].keys()
    assert all(torch.equal(a["net_state"][k], b["net_state"][k]) for k in b["net_state"])
    assert a["history"] == b["history"]
    r = python(FIT.replace("TINY, schedule", "TINY, name='other', schedule").format(ckpt="ck", out="x.pt"), cwd=files)
    assert r.returncode != 0 and "another run" in r.stderr                  # another configuration: refused


def test_ensemble_checkpoints_each_member_and_resumes(files):
    "Two members checkpoint into member0/ and member1/; the same command run again reads them back to the same weights."
    fit2 = FIT.replace("TINY, schedule=", "TINY, arch=replace(TINY.arch, n_members=2), schedule=")
    for ckpt, out in (("ck2", "e1.pt"), ("ck2", "e2.pt"), (None, "e3.pt")):
        r = python(fit2.format(ckpt=ckpt, out=out), cwd=files); assert r.returncode == 0, r.stderr
    assert {"member0", "member1"} <= {p.name for p in (files / "ck2").iterdir()}     # phase (i) beside them, shared
    assert (files / "ck2" / "member1" / "iii_sc_imputation.pt").exists()
    a, b, c = (torch.load(files / f, weights_only=True) for f in ("e1.pt", "e2.pt", "e3.pt"))
    assert any(k.startswith("members.1.") for k in a["net_state"])
    for x in (b, c): assert all(torch.equal(a["net_state"][k], x["net_state"][k]) for k in a["net_state"])
    assert a["history"] == b["history"] == c["history"]


def test_distributed_fit_matches_one_process(files):
    """`torchrun --nproc_per_node=2 -m scdtl.cli fit --distributed` (gloo, CPU) against `scdtl fit`, same seed.
    Tolerance (measured: pretraining within 2.9% at every epoch, phase (iii) best within 0.3%, phase (ii)'s MMD-driven
    validation loss swings 0.40-0.77 between epochs of ONE run, imputed zeros PCC 0.980-0.987):
    phase (i) identical (every rank runs it whole), pretraining within 5% at every epoch, phase (ii)'s best within 25%,
    phase (iii)'s and phase (iv)'s best within 5%, the imputed zeros correlated at 0.95 or more."""
    args = ["fit", "sc.h5ad", "--bulk", "bulk.h5ad", "--quiet"]
    r = run([SCDTL, *args, "-o", "one.pt"], cwd=files); assert r.returncode == 0, r.stderr
    r = run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "scdtl.cli", *args, "-o", "two.pt", "--distributed"],
            cwd=files)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("wrote two.pt") == 1                              # rank 0 alone writes
    r = python("""
import json, numpy as np, pandas as pd, anndata as ad
from scdtl.api import SCDTL, member_history
one, two = SCDTL.load('one.pt'), SCDTL.load('two.pt')
h1, h2 = member_history(one.history), member_history(two.history)   # the default is an ensemble: its first member
v = lambda h, p: h[h.phase == p].val.to_numpy()
pre1, pre2 = v(h1, 'sc DAE pretraining'), v(h2, 'sc DAE pretraining'); n = min(len(pre1), len(pre2))
sc = ad.read_h5ad('sc.h5ad'); y1, y2 = (m.impute(sc, genes=one.genes).toarray() for m in (one, two))
z = sc[:, one.genes].X.toarray() == 0
print(json.dumps(dict(bulk=bool((v(h1, '(i) bulk imputer') == v(h2, '(i) bulk imputer')).all()),
    pre=float(np.max(np.abs(pre1[:n] - pre2[:n]) / pre1[:n])),
    dtl=float(abs(v(h1, '(ii) domain adaptation').min() / v(h2, '(ii) domain adaptation').min() - 1)),
    sc=float(abs(v(h1, '(iii) sc imputation').min() / v(h2, '(iii) sc imputation').min() - 1)),
    other=float(abs(h1[h1.phase == '(iv) other genes'].val.min() / h2[h2.phase == '(iv) other genes'].val.min() - 1)),
    pcc=float(np.corrcoef(y1[z], y2[z])[0, 1]))))
""", cwd=files)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["bulk"] and d["pre"] < 0.05 and d["dtl"] < 0.25 and d["sc"] < 0.05 and d["other"] < 0.05 and d["pcc"] >= 0.95, d


def test_distributed_without_torchrun_is_a_clear_error(files):
    r = run([SCDTL, "fit", "sc.h5ad", "--bulk", "bulk.h5ad", "-o", "m.pt", "--distributed", "--quiet"], cwd=files)
    assert r.returncode == 2 and "torchrun" in r.stderr and "Traceback" not in r.stderr


def test_impute_with_a_saved_model_chunk_by_chunk(files):
    "`scdtl fit` then `scdtl impute --model` on a backed file: the in-memory values, the input untouched, sizes as stated."
    r = run([SCDTL, "fit", "sc.h5ad", "--bulk", "bulk.h5ad", "-o", "m.pt", "--quiet"], cwd=files); assert r.returncode == 0, r.stderr
    before = sha256(files / "sc.h5ad")
    for extra, out in ((["--chunk-size", "50"], "o16.h5ad"), (["--dtype", "float32", "--latent"], "o32.h5ad"),
                       (["--values", "filled", "--zeros", "0.5"], "ofill.h5ad")):
        r = run([SCDTL, "impute", "sc.h5ad", "--model", "m.pt", "-o", out, "--quiet", *extra], cwd=files)
        assert r.returncode == 0, r.stderr
    assert sha256(files / "sc.h5ad") == before
    r = python("""
import json, numpy as np, anndata as ad, scipy.sparse as sp
from scdtl.api import SCDTL
m = SCDTL.load('m.pt'); sc = ad.read_h5ad('sc.h5ad')
want = m.impute(sc, genes=m.genes).toarray(); half = m.impute(sc, genes=m.genes, zeros=0.5).toarray()
o16, o32, of = (ad.read_h5ad(f) for f in ('o16.h5ad', 'o32.h5ad', 'ofill.h5ad'))
obs = np.where(sc[:, m.genes].X.toarray() > 0, half, 0)
print(json.dumps(dict(shape=list(o16.shape), genes=list(o16.var_names) == m.genes, dtype=str(o16.X.dtype),
    err16=float(np.abs(o16.X.astype(np.float32) - want).max()), err32=float(np.abs(o32.X - want).max()),
    latent=float(np.abs(o32.obsm['X_scdtl'] - m.latent(sc)).max()), sparse=sp.issparse(of.X),
    fill=float(np.abs(of.X.toarray() + obs - half).max()), scale=o16.uns['scdtl_scales']['X'])))
""", cwd=files)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["shape"][0] == 240 and d["genes"] and d["dtype"] == "float16" and d["scale"] == "log1p_norm", d
    assert d["err16"] < 0.01 and d["err32"] < 1e-5 and d["latent"] < 1e-5 and d["sparse"] and d["fill"] < 1e-5, d
    r = run([SCDTL, "impute", "sc.h5ad", "--model", "m.pt", "-o", "sc.h5ad", "--quiet"], cwd=files)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr and sha256(files / "sc.h5ad") == before


SIDE = TINY + """import anndata as ad, scdtl, torch
from dataclasses import replace
from scdtl.api import side_by_side
torch.set_num_threads({threads})
cfg = replace(TINY, arch=replace(TINY.arch, n_members=2), schedule=replace(TINY.schedule, max_epochs_dtl=4, max_epochs_sc=4))
assert side_by_side(2) == ({threads} == 2)
m = scdtl.SCDTL.load('bulk_only.pt', config=cfg).fit(ad.read_h5ad('sc.h5ad'), checkpoint_dir={ckpt!r}, checkpoint_every=1)
m.save({out!r})
print('FORKED_KIB', scdtl.api.forked_peak_kib())
"""


def test_members_side_by_side_match_one_after_another(files):
    """With two torch threads and two members, each member trains in a forked one-thread process: the same weights and
    history as one after another on one thread, from the same bulk model; with checkpoints, run again, it resumes to them.
    The memory the forked members added is recorded (`forked_peak_kib`) only when they fork."""
    r = python(TINY + "import anndata as ad, scdtl\nscdtl.SCDTL(TINY, progress=False).pretrain_bulk("
               "ad.read_h5ad('bulk.h5ad')).save('bulk_only.pt')", cwd=files)
    assert r.returncode == 0, r.stderr
    for threads, ckpt, out in ((2, None, "side.pt"), (1, None, "seq.pt"), (2, "ck_side", "side_ck.pt"), (2, "ck_side", "again.pt")):
        r = python(SIDE.format(threads=threads, ckpt=ckpt, out=out), cwd=files); assert r.returncode == 0, r.stderr
        assert ("members, side by side" in r.stderr) == (threads == 2)        # its progress bar counts members
        assert (int(r.stdout.split("FORKED_KIB")[1]) > 0) == (threads == 2)   # the memory its members added, for peak readers
    side, seq, ck, again = (torch.load(files / f, weights_only=True) for f in ("side.pt", "seq.pt", "side_ck.pt", "again.pt"))
    assert any(k.startswith("members.1.") for k in side["net_state"])
    for x in (seq, ck, again): assert all(torch.equal(side["net_state"][k], x["net_state"][k]) for k in side["net_state"])
    assert side["history"] == seq["history"] == ck["history"] == again["history"]
    assert (files / "ck_side" / "member1" / "iii_sc_imputation.pt").exists()


def test_large_data_fit_trains_one_network_and_imputes_a_file(files):
    """Above `epoch_cells` training cells a two-member preset trains one network (`Schedule.large_members`): the saved
    model says so, loads with the preset's own config, and `scdtl impute --model --latent` writes that network's latent."""
    r = python(TINY + """import anndata as ad, scdtl
cfg = replace(TINY, arch=replace(TINY.arch, n_members=2), schedule=replace(TINY.schedule, epoch_cells=50))
m = scdtl.SCDTL(cfg, progress=False).fit(ad.read_h5ad('sc.h5ad'), ad.read_h5ad('bulk.h5ad')); m.save('large.pt')
back = scdtl.SCDTL.load('large.pt', config=cfg, progress=False)
print('MEMBERS', m.n_members, back.n_members, back.config.arch.n_members)
""", cwd=files)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("MEMBERS")[1].split() == ["1", "1", "2"]        # one network; the preset still names two
    r = run([SCDTL, "impute", "sc.h5ad", "--model", "large.pt", "-o", "large_out.h5ad", "--latent", "--quiet"], cwd=files)
    assert r.returncode == 0, r.stderr
    r = python("""
import anndata as ad, numpy as np
from scdtl.api import SCDTL
m, o = SCDTL.load('large.pt'), ad.read_h5ad('large_out.h5ad')
print('LATENT', o.obsm['X_scdtl'].shape[1], float(np.abs(o.obsm['X_scdtl'] - m.latent(ad.read_h5ad('sc.h5ad'))).max()))
""", cwd=files)
    assert r.returncode == 0, r.stderr
    width, err = r.stdout.split("LATENT")[1].split()
    assert int(width) == 8 and float(err) < 1e-5                            # TINY's n_latent, one network's
