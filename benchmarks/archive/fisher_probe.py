"""Design probe (issue 5): does weighting columns by the Fisher of the loss help int2? (It does not.)

Fisher of the loss w.r.t. the input vectors on calibration text (SQuAD dev articles 0-23, 8192 tokens);
perplexity on the validation text (articles 24-47, first 2048 tokens), SmolLM2-135M, input scope.
Columns are scaled by Fisher^alpha before int2 quantization and unscaled after (AWQ-style), with and
without centring. Regenerate: .venv/bin/python benchmarks/fisher_probe.py   (~6 min on 2 cores)
"""
import copy
import time

import torch
from embcompress import compress, make_config
from embcompress.data import squad_dev_articles
from embcompress.evaluate.perplexity import causal_perplexity
from embcompress.models import load_model
torch.manual_seed(0)
data = squad_dev_articles()
calib = "\n".join(p["context"] for a in data[:24] for p in a["paragraphs"])
valid = "\n".join(p["context"] for a in data[24:] for p in a["paragraphs"])
model, tok = load_model("smollm2-135m")
emb = model.get_input_embeddings()
w = emb.weight.detach().clone()
V, d = w.shape
# Fisher of the loss w.r.t. the input embedding vectors on calibration text
ids = tok(calib, add_special_tokens=False).input_ids[:8192]
row_f = torch.zeros(V); col_f = torch.zeros(d); n = 0
t = time.time()
for s in range(0, len(ids), 512):
    x = torch.tensor([ids[s:s+512]])
    e = emb(x).detach().requires_grad_(True)
    out = model(inputs_embeds=e, labels=x)
    g, = torch.autograd.grad(out.loss * x.shape[1], e)
    g2 = g[0] ** 2
    col_f += g2.sum(0); row_f.index_add_(0, x[0], g2.sum(1)); n += x.shape[1]
print("fisher", time.time() - t, "s", flush=True)

cf = col_f / col_f.mean()
print("col fisher spread: min %.3f med %.3f max %.3f" % (cf.min(), cf.median(), cf.max()), "top cols", cf.topk(5).indices.tolist(), flush=True)
col_std = w.std(0); col_mean = w.mean(0)
print("corr(col_f, |mean|) %.3f corr(col_f, std) %.3f" % (torch.corrcoef(torch.stack([cf, col_mean.abs()]))[0,1], torch.corrcoef(torch.stack([cf, col_std]))[0,1]), flush=True)
def ppl(weight):
    m = copy.deepcopy(model)
    m.lm_head.weight = torch.nn.Parameter(w.clone())
    m.model.embed_tokens.weight = torch.nn.Parameter(weight)
    return causal_perplexity(m, tok, valid, max_tokens=2048, progress=False).perplexity
base = ppl(w.clone()); print("base", base, flush=True)
for alpha in [0.0, 0.25, 0.5]:
    for center in [False, True]:
        s_ = cf ** alpha
        mu = w.mean(0) if center else torch.zeros(d)
        q = compress((w - mu) * s_, make_config("int", bits=2))
        r = q.reconstruct() / s_ + mu
        p = ppl(r)
        e = r - w
        print(f"alpha {alpha} center {center}: ppl {p:.3f} ({(p/base-1)*100:+.1f}%) frob {(e.norm()/w.norm()):.4f} fisher-weighted err {((e**2)*cf).sum()/((w**2)*cf).sum():.4f}", flush=True)
