"""One table of method cases, every case through the same contract.

GOLDEN pins the sha256 of each fitted module's state dict (names, dtypes, shapes and bytes) as the
code before the one-contract redesign produced them: the redesign had to keep the same floats and the
same bytes on disk for every preset.
"""

import hashlib

import pytest
import torch

from embcompress import compress, make_config
from embcompress.methods import module_class

# (preset, options, rows, dim): rows large enough for 256-centroid PQ codebooks inside the budget
METHOD_CASES = [
    ("svd", dict(ratio=5), 512, 64),
    ("autoencoder", dict(ratio=5, epochs=2, progress=False), 512, 64),
    ("autoencoder-fast", dict(ratio=5, progress=False), 512, 64),
    ("autoencoder-elu", dict(ratio=5, progress=False), 512, 64),
    ("autoencoder-leaky", dict(ratio=5, progress=False), 512, 64),
    ("int", dict(bits=4), 512, 64),
    ("int", dict(bits=3, group_size=16, zero_point=True, center=True, row_norms=True), 512, 64),
    ("gguf", dict(qtype="Q4_0"), 512, 64),
    ("gguf", dict(qtype="Q5_1"), 512, 64),
    ("pq", dict(sub_dim=8, iterations=4), 1024, 64),
    ("mixed", dict(ratio=6), 4096, 64),
    ("tiered", dict(ratio=6), 2048, 64),
    ("tiered-rank1", dict(ratio=6), 2048, 64),
    ("tiered-pq", dict(ratio=6), 8192, 64),
    ("hybrid", dict(rank=8, bits=2), 512, 64),
]
IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(METHOD_CASES)]


def _weight(rows, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    # a shared offset, a few strong directions and noise: what embedding matrices look like
    return (0.3 * torch.randn(1, dim, generator=g) + torch.randn(rows, 6, generator=g) @ torch.randn(6, dim, generator=g)
            + 0.3 * torch.randn(rows, dim, generator=g))


def _counts(rows):
    return torch.arange(rows, 0, -1, dtype=torch.float32)  # calibration-like importance, most frequent first


def _fit(case):
    name, options, rows, dim = case
    weight = _weight(rows, dim)
    return compress(weight, make_config(name, **options), row_weights=_counts(rows)), weight


def state_digest(module) -> str:
    h = hashlib.sha256()
    for key, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


GOLDEN = {
          'svd-0': 'b21b3eaadab07acb',
          'autoencoder-1': '8b7aca5e86e5fcf7',
          'autoencoder-fast-2': '80140a41bd76bd82',
          'autoencoder-elu-3': 'cf57d8f1d5d8fb70',
          'autoencoder-leaky-4': '1f7cee57b05a78a0',
          'int-5': '611027e8d567e701',
          'int-6': 'dfb6616dd14ef747',
          'gguf-7': '7c2ccf0a783b6963',
          'gguf-8': '7fda9a77e8e9a353',
          'pq-9': '72ba3e9477fcfd65',
          'mixed-10': 'a005b3e988a98814',
          'tiered-11': '927895cc0629c756',
          'tiered-rank1-12': 'f93bb7bf6b73c814',
          'tiered-pq-13': 'db2cdb6910ca08f0',
          'hybrid-14': '95bfe69a3e37e84d'}


@pytest.fixture(scope="module")
def fitted():
    return {case_id: _fit(case) for case_id, case in zip(IDS, METHOD_CASES)}


@pytest.mark.parametrize("case_id", IDS)
def test_same_bytes_as_before_the_redesign(fitted, case_id):
    module, _ = fitted[case_id]
    assert state_digest(module) == GOLDEN[case_id]


@pytest.mark.parametrize("case_id", IDS)
def test_forward_equals_reconstruct_and_tied_logits_equal_dense(fitted, case_id):
    module, weight = fitted[case_id]
    ids = torch.tensor([[0, 5, 17], [3, 3, weight.shape[0] - 1]])
    dense = module.reconstruct()
    # rank-k products of a few rows and of all rows may round differently: within float rounding
    torch.testing.assert_close(module(ids), dense[ids] * module.scale, rtol=1e-5, atol=1e-5)
    hidden = torch.randn(2, 3, weight.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(module.logits(hidden), hidden @ dense.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case_id", IDS)
def test_decode_into_writes_only_the_rows_asked(fitted, case_id):
    module, weight = fitted[case_id]
    ids = torch.tensor([7, 1, 30])
    out = torch.full((5, weight.shape[1]), 9.0)
    rows = torch.tensor([4, 0, 2])
    module.decode_into(out, rows, ids)
    assert torch.equal(out[rows], module.decode(ids)) and (out[[1, 3]] == 9.0).all()
    module.decode_into(out, rows, ids, add_to=True)
    torch.testing.assert_close(out[rows], 2 * module.decode(ids))


@pytest.mark.parametrize("case_id", IDS)
def test_nbytes_is_what_is_written_and_rebuild_from_spec(fitted, case_id, tmp_path):
    from safetensors.torch import load_file, save_file

    module, weight = fitted[case_id]
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"))
    written = load_file(str(tmp_path / "m.safetensors"))
    assert sum(t.numel() * t.element_size() for t in written.values()) == module.nbytes()
    rebuilt = module_class(module.method)(**module.spec())
    rebuilt.load_state_dict(written)
    assert torch.equal(rebuilt.reconstruct(), module.reconstruct())


@pytest.mark.parametrize("case_id", IDS)
def test_same_seed_same_bytes(fitted, case_id):
    module, _ = fitted[case_id]
    again, _ = _fit(METHOD_CASES[IDS.index(case_id)])
    assert state_digest(again) == state_digest(module)


# -- the storage contract: what composites budget with is what the parts store ----------------------

LEAF_STORAGE_CASES = [
    ("int", dict(bits=4)), ("int", dict(bits=3, group_size=16, zero_point=True, center=True, row_norms=True)),
    ("gguf", dict(qtype="Q4_0")), ("gguf", dict(qtype="Q8_0")), ("pq", dict(sub_dim=8, iterations=2)),
    ("pq", dict(sub_dim=4, shape_gain=False, center=True, iterations=2)), ("svd", dict(rank=7, dtype="float16")),
    ("autoencoder", dict(rank=5, epochs=1, row_norms=True, progress=False)),
]


@pytest.mark.parametrize("name,options", LEAF_STORAGE_CASES)
def test_storage_states_the_bytes_a_method_stores(name, options):
    config = make_config(name, **options)
    for rows in (300, 1000):
        module = compress(_weight(rows, 64), config)
        assert module_class(name).storage(config, 64).bytes(rows) == module.nbytes()


@pytest.mark.parametrize("name,ratio,rows", [("tiered-pq", 6, 8192), ("tiered-pq", 10, 8192), ("mixed", 4, 4096),
                                             ("mixed", 8, 8192), ("tiered", 5, 2048)])
def test_composites_fill_their_budget_from_their_parts_storage(name, ratio, rows, monkeypatch):
    from embcompress.methods.pq import PqEmbedding

    budget = rows * 64 * 2 / ratio
    module = compress(_weight(rows, 64), make_config(name, ratio=ratio), row_weights=_counts(rows))
    assert 0.97 * budget <= module.nbytes() <= budget
    # if PQ stored more per row (say fp32 norms) and said so, the composites would still meet their budget
    real = PqEmbedding.storage.__func__
    monkeypatch.setattr(PqEmbedding, "storage", classmethod(
        lambda cls, config, dim: type(real(cls, config, dim))(real(cls, config, dim).per_row + 2, real(cls, config, dim).shared)))
    claimed = compress(_weight(rows, 64), make_config(name, ratio=ratio), row_weights=_counts(rows))
    pq_rows = sum(p.num_embeddings for p in claimed.modules() if isinstance(p, PqEmbedding))
    assert claimed.nbytes() + 2 * pq_rows <= budget  # the extra bytes were paid from the budget


# -- a method from outside the package, in one file -------------------------------------------------

USER_METHOD = '''
from dataclasses import dataclass

import torch

from embcompress import register_method
from embcompress.methods.base import CompressedEmbedding, Storage


@dataclass
class HalfConfig:
    method: str = "half"


class HalfEmbedding(CompressedEmbedding):
    def __init__(self, num_embeddings, embedding_dim, **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.register_buffer("rows", torch.empty(num_embeddings, embedding_dim, dtype=torch.float16))

    @classmethod
    def storage(cls, config, dim):
        return Storage(per_row=2 * dim, shared=0)

    def decode(self, ids):
        return self.rows[ids].float()


def fit(weight, config):
    module = HalfEmbedding(*weight.shape)
    module.rows.copy_(weight.detach().half())
    return module


register_method("half", config=HalfConfig, fit=fit, module=HalfEmbedding)
'''


def test_a_method_from_a_users_own_file(tiny_lm_dir, data_dir, tmp_path):
    import os
    import subprocess
    import sys

    plugin = tmp_path / "half_method.py"
    plugin.write_text(USER_METHOD)
    env = {**os.environ, "EMBCOMPRESS_METHODS": str(plugin)}
    cli = [sys.executable, "-c", "from embcompress.cli import main; main()"]

    def run(*args):
        done = subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert "half:" in run("methods")
    run("compress", tiny_lm_dir, "-m", "half", "--out", tmp_path / "c")
    table = run("sweep", "--models", tiny_lm_dir, "--methods", "half", "--max-tokens", "60", "--data-dir", data_dir,
                "--out", tmp_path / "r.jsonl")
    assert "| half |" in table
    check = ("import torch, transformers as tf, embcompress\n"
             f"a = embcompress.load_compressed({str(tmp_path / 'c')!r})\n"
             f"b = tf.AutoModelForCausalLM.from_pretrained({str(tmp_path / 'c')!r})\n"
             "ids = torch.tensor([[5, 6, 7]])\n"
             "assert type(a.get_input_embeddings()).__name__ == 'HalfEmbedding'\n"
             "assert torch.equal(a(input_ids=ids).logits, b(input_ids=ids).logits)\nprint('SAME')")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=300)
    assert "SAME" in done.stdout, done.stderr[-2000:]
