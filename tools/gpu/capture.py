"""Capture exactly what SCDTL('paper') trains on (CellBench 5 lines, 40% held out, seed 0), for the GPU run."""
import numpy as np, torch
import scdtl.api as api
from scdtl.data import load
from scdtl.evaluate import make_task
from scdtl.api import SCDTL
cap = {}
api.train_bulk = lambda net, xtr, xva, **kw: cap.update(xb_train=xtr.half(), xb_val=xva.half()) or []
api.train_all = lambda net, xbt, xbv, xst, xsv, **kw: cap.update(xs_train=xst, xs_val=xsv, labels_train=kw["labels_train"],
                                                                  labels_val=kw["labels_val"], sc_to_bulk=net.sc_to_bulk) or []
a, gdsc = load("cellbench_celseq2_5cl"), load("gdsc")
task = make_task(a, rate=0.4, seed=0, bulk_genes=gdsc.var_names)
m = SCDTL("paper", seed=0, device="cpu", progress=False).pretrain_bulk(gdsc).fit(task.observed)
import scdtl.preprocess as pp
cols = task.observed.var_names.get_indexer(m.genes)
block = np.asarray(task.observed.layers["log1p_norm"][:, cols].todense(), np.float32)
cap["xs_all"] = torch.as_tensor(m.sc_scaler.transform(block), dtype=torch.float32)
cap["n_bulk_genes"] = len(m.bulk_genes)
torch.save(cap, ".gpu/inputs.pt")
m.save(".gpu/paper_shell.pt")  # for the scaler/genes when scoring back here (untrained net)
print({k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in cap.items()})
