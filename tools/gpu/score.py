import numpy as np, torch, json
from scdtl.data import load
from scdtl.evaluate import make_task, score
from scdtl.api import SCDTL, _fill
a, gdsc = load("cellbench_celseq2_5cl"), load("gdsc")
task = make_task(a, rate=0.4, seed=0, bulk_genes=gdsc.var_names)
m = SCDTL.load(".gpu/paper_shell.pt", progress=False)
cols = task.observed.var_names.get_indexer(m.genes)
block = np.asarray(task.observed.layers["log1p_norm"][:, cols].todense(), np.float32)
gi = [m.genes.index(g) for g in task.genes]
summary = json.load(open(".gpu/out/summary.json"))
for name, f in (("paper", "paper"), ("paper without U-Net", "paper_without_U-Net"), ("paper sizes, our U-Net", "paper_sizes_our_U-Net")):
    d = torch.load(f".gpu/out/{f}.pt"); y, p = d["y"].float().numpy(), d["p"].float().numpy()
    est = m.sc_scaler.inverse_transform(y).astype(np.float32); p = np.where(block > 0, 0, p)
    out = {}
    for z in ("fill", "expected"):
        r = score(task, np.where(block > 0, block, _fill(est, p, z))[:, gi])
        out[z] = {k: round(r[k], 4) for k in ("pcc", "rmse", "l1", "zero_mass", "zeros_preserved")}
    print(name, f"fit {summary[name]['seconds']:.0f} s (+ phase (i) {summary['bulk_seconds']:.0f} s)", out)
