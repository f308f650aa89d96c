"""GPU check: the paper-size architectures at the full schedule on CellBench 5 lines, 40% held out, seed 0."""
import json, os, sys, time, torch
sys.path.insert(0, ".")
from dataclasses import replace
from scdtl.config import get_config, Ablation
from scdtl.model import BulkDAE, SCDTLNet, reconstruct_tensor
from scdtl.train import train_bulk, train_all
from scdtl.nn.unet import module_order
out, dev, seed = os.environ["OUT"], "cuda", 0
cap = torch.load(".gpu/inputs.pt", weights_only=True)
paper = get_config("paper")
ours = replace(paper, arch=replace(paper.arch, n_identity=4), losses=replace(paper.losses, w_unet=1.0),
               ablation=Ablation(fusion="residual", cell_context=True, gene_order="bulk"), name="paper+ours")
variants = {"paper": paper, "paper without U-Net": replace(paper, ablation=Ablation(use_unet=False)), "paper sizes, our U-Net": ours}
xbt, xbv = cap["xb_train"].float().to(dev), cap["xb_val"].float().to(dev)
xst, xsv, xs_all = cap["xs_train"].to(dev), cap["xs_val"].to(dev), cap["xs_all"].to(dev)
lt, lv, s2b = cap["labels_train"].to(dev), cap["labels_val"].to(dev), cap["sc_to_bulk"]
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
t = time.time(); torch.manual_seed(seed)
bulk = BulkDAE(cap["n_bulk_genes"], paper).to(dev)
h1 = train_bulk(bulk, xbt, xbv, config=paper, gen=torch.Generator().manual_seed(seed), progress=False)
bulk_s = time.time() - t; state = {k: v.clone() for k, v in bulk.state_dict().items()}
print(f"phase (i): {len(h1)} epochs, {bulk_s:.1f} s", flush=True)
res = {}
for name, cfg in variants.items():
    bulk.load_state_dict(state)
    order = module_order(xbt[:, s2b.to(dev)].cpu().numpy()) if cfg.ablation.gene_order == "bulk" else None
    torch.manual_seed(seed); t = time.time()
    net = SCDTLNet(s2b, cfg, bulk=bulk, order=order).to(dev)
    hist = train_all(net, xbt, xbv, xst, xsv, config=cfg, seed=seed, labels_train=lt, labels_val=lv, progress=False)
    torch.cuda.synchronize(); secs = time.time() - t
    y, p = reconstruct_tensor(net, xs_all, batch_size=256, dropout=True)
    epochs = {ph: sum(h["phase"] == ph for h in hist) for ph in dict.fromkeys(h["phase"] for h in hist)}
    res[name] = dict(seconds=secs, epochs=epochs, peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                     val_last={ph: min(h["val"] for h in hist if h["phase"] == ph) for ph in epochs})
    torch.save(dict(y=y.half().cpu(), p=p.half().cpu()), f"{out}/{name.replace(' ', '_').replace(',', '')}.pt")
    json.dump(dict(bulk_seconds=bulk_s, bulk_epochs=len(h1), **res), open(f"{out}/summary.json", "w"), indent=1)
    print(name, json.dumps(res[name]), flush=True)
