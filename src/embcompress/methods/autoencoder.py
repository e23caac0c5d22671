"""The paper's method ("Direction is what you need", Bałazy et al. 2021).

An autoencoder is trained on the rows of E with a loss that weighs the direction of each
reconstructed row (cosine distance) plus a small magnitude term. Only ``codes = encoder(E)`` and the
decoder are kept; the encoder is thrown away. Defaults are the authors' settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..device import default_device
from ..errors import EmbcompressError
from .registry import register_method
from .base import CompressedEmbedding, Storage, SizeConfig, check_weight, dtype_from_name, dtype_name, resolve_rank

NAME = "autoencoder"
# encoder / decoder activations: the paper's linear and ELU variants, and its follow-up's LeakyReLU
# encoder with a Tanh decoder (used with row_norms: Tanh bounds the values, the stored norm restores them)
ACTIVATIONS = {"linear": (nn.Identity, nn.Identity), "elu": (nn.ELU, nn.ELU), "leaky-tanh": (nn.LeakyReLU, nn.Tanh)}
# the decoder activations applied in place: a lookup that needs no gradient then allocates one output, not three
DECODER_ACT_INPLACE = {"linear": lambda x: x, "elu": F.elu_, "leaky-tanh": torch.tanh_}


@dataclass
class AutoencoderConfig(SizeConfig):
    activation: str = "linear"  # "elu" (the paper's non-linear variant) or "leaky-tanh" (its follow-up's); see ACTIVATIONS
    w_cos: float = 0.9975 / 5
    w_l2: float = 0.0
    w_l1: float = 0.0025
    alpha_anneal_epochs: int = 20  # α(e) = 1 − (1 − alpha_final)·e/alpha_anneal_epochs, then alpha_final
    alpha_final: float = 0.1
    lr: float = 1e-3
    lr_step_epochs: int = 4
    lr_gamma: float = 0.5
    batch_size: int = 32
    epochs: int = 30
    seed: int = 1
    svd_init: bool = False  # start from the SVD solution (encoder = V_kᵀ, decoder = V_k, zero bias)
    row_norms: bool = False  # follow-up paper: rescale each decoded row to the stored original norm
    dtype: str | None = None  # storage dtype of codes and decoder; None keeps the weight's dtype
    device: str | None = None  # training device; None picks a GPU when there is one
    progress: bool = True
    method: str = NAME


# The authors' settings take minutes to hours on a CPU (one optimiser step per 32 rows). This preset
# starts from SVD and uses large batches: same loss, same architecture, far fewer steps.
FAST = dict(batch_size=1024, epochs=12, lr=2e-3, lr_step_epochs=4, alpha_anneal_epochs=8, svd_init=True)


def rank_for_ratio(num_rows: int, dim: int, ratio: float) -> int:
    """k whose CR = V·d / (V·k + k·d + d) is nearest to ``ratio`` (decoder bias counted); this gives
    the paper's k = 300, 150, 75 for BERT-base at CR 2.5, 5, 10."""
    return round((num_rows * dim / ratio - dim) / (num_rows + dim))


def compression_ratio(num_rows: int, dim: int, k: int) -> float:
    return num_rows * dim / (num_rows * k + k * dim + dim)


def alpha(epoch: int, config: AutoencoderConfig) -> float:
    if epoch < config.alpha_anneal_epochs:
        return 1.0 - (1.0 - config.alpha_final) * epoch / config.alpha_anneal_epochs
    return config.alpha_final


def direction_loss(x_hat: torch.Tensor, x: torch.Tensor, config: AutoencoderConfig, alpha_value: float) -> torch.Tensor:
    """L = w_cos·mean(1 − cos) + w_l2·RMSE + w_l1·mean((|err| + 1e-10)^α); a term counts only if its weight > 0."""
    loss = x.new_zeros(())
    if config.w_cos > 0:
        loss = loss + config.w_cos * (1 - F.cosine_similarity(x_hat, x, dim=-1, eps=1e-6)).mean()
    if config.w_l2 > 0:
        loss = loss + config.w_l2 * torch.sqrt(F.mse_loss(x_hat, x))
    if config.w_l1 > 0:
        loss = loss + config.w_l1 * ((x_hat - x).abs() + 1e-10).pow(alpha_value).mean()
    return loss


def _activations(name: str) -> tuple[nn.Module, nn.Module]:
    if name not in ACTIVATIONS:
        raise EmbcompressError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    encoder_act, decoder_act = ACTIVATIONS[name]
    return encoder_act(), decoder_act()


def _with_norms(x_hat: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Row-norm enforcement: the decoder gives the direction, the stored norm the length."""
    return F.normalize(x_hat, dim=-1) * norms.unsqueeze(-1)


class AutoencoderEmbedding(CompressedEmbedding):
    """Kept part of the autoencoder: a code table (V×k) and the decoder Linear(k → d) (+ ELU)."""

    method = NAME
    shared = ("decoder.weight", "decoder.bias")

    def __init__(self, num_embeddings, embedding_dim, latent_dim, activation="linear", row_norms=False,
                 factor_dtype="float32", **base):
        super().__init__(num_embeddings, embedding_dim, **base)
        self.latent_dim = latent_dim
        self.activation = activation
        self.row_norms = bool(row_norms)
        self.factor_dtype = factor_dtype
        dtype = dtype_from_name(factor_dtype)
        self.codes = nn.Parameter(torch.empty(num_embeddings, latent_dim, dtype=dtype))
        self.decoder = nn.Linear(latent_dim, embedding_dim, dtype=dtype)
        self.act = _activations(activation)[1]
        if self.row_norms:
            self.norms = nn.Parameter(torch.empty(num_embeddings, dtype=dtype))

    def method_spec(self):
        return {"latent_dim": self.latent_dim, "activation": self.activation, "row_norms": self.row_norms,
                "factor_dtype": self.factor_dtype}

    paper_trains_decoder = True

    @classmethod
    def storage(cls, config, dim):
        if config.rank is None:
            raise EmbcompressError("the storage of an autoencoder part needs its latent size (rank)")
        size = dtype_from_name(config.dtype or "float32").itemsize
        return Storage(per_row=(config.rank + config.row_norms) * size, shared=(config.rank + 1) * dim * size)

    def decode(self, ids):
        codes = F.embedding(ids, self.codes).float()
        out = F.linear(codes, self.decoder.weight.float(), self.decoder.bias.float())
        if out.requires_grad:  # fine-tuning: autograd needs the intermediate tensors
            out = self.act(out)
            return _with_norms(out, self.norms[ids].float()) if self.row_norms else out
        out = DECODER_ACT_INPLACE[self.activation](out)
        if self.row_norms:  # same as _with_norms: x / max(‖x‖, 1e-12) · norm
            out.mul_((self.norms[ids].float() / out.norm(dim=-1).clamp_min(1e-12)).unsqueeze(-1))
        return out

    def logits(self, hidden, chunk_rows: int = 16384):
        if self.activation != "linear" or self.row_norms:
            return super().logits(hidden, chunk_rows)
        # (h · W_dec) · codesᵀ + h · b: never builds the V×d matrix.
        w, b = self.decoder.weight.to(hidden.dtype), self.decoder.bias.to(hidden.dtype)
        return (hidden @ w) @ self.codes.to(hidden.dtype).T + (hidden @ b).unsqueeze(-1)


class _Autoencoder(nn.Module):
    def __init__(self, dim: int, k: int, activation: str):
        super().__init__()
        encoder_act, decoder_act = _activations(activation)
        self.encoder = nn.Sequential(nn.Linear(dim, k), encoder_act)
        self.decoder = nn.Sequential(nn.Linear(k, dim), decoder_act)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def fit(weight: torch.Tensor, config: AutoencoderConfig) -> AutoencoderEmbedding:
    check_weight(weight)
    _activations(config.activation)  # a bad name fails before training
    num_rows, dim = weight.shape
    k = resolve_rank(config, num_rows, dim, rank_for_ratio)
    device = torch.device(config.device) if config.device else default_device()
    x_all = weight.detach().to(device=device, dtype=torch.float32)

    torch.manual_seed(config.seed)
    model = _Autoencoder(dim, k, config.activation).to(device)
    if config.svd_init:
        _, _, vt = torch.linalg.svd(x_all, full_matrices=False)
        with torch.no_grad():
            model.encoder[0].weight.copy_(vt[:k])
            model.decoder[0].weight.copy_(vt[:k].T)
            model.encoder[0].bias.zero_()
            model.decoder[0].bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    gen = torch.Generator().manual_seed(config.seed)

    bar = tqdm(range(config.epochs), desc=f"autoencoder k={k}", disable=not config.progress, leave=False)
    for epoch in bar:
        a = alpha(epoch, config)
        perm = torch.randperm(num_rows, generator=gen).to(device)
        total, batches = 0.0, 0
        for start in range(0, num_rows, config.batch_size):
            x = x_all[perm[start : start + config.batch_size]]
            x_hat = _with_norms(model(x), x.norm(dim=-1)) if config.row_norms else model(x)
            loss = direction_loss(x_hat, x, config, a)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        sched.step()
        bar.set_postfix(loss=f"{total / batches:.5f}", alpha=f"{a:.2f}")
    # The last epoch is kept: choosing a checkpoint on evaluation text would leak it into the result.

    storage = config.dtype or dtype_name(weight.dtype)
    module = AutoencoderEmbedding(num_rows, dim, k, config.activation, config.row_norms, storage,
                                  output_dtype=dtype_name(weight.dtype))
    with torch.no_grad():
        codes = torch.cat([model.encoder(x_all[i : i + 65536]) for i in range(0, num_rows, 65536)])
        module.codes.copy_(codes)
        module.decoder.load_state_dict(model.decoder[0].state_dict())
        if config.row_norms:
            module.norms.copy_(x_all.norm(dim=-1))
    return module.to(weight.device)


register_method(NAME, config=AutoencoderConfig, fit=fit, module=AutoencoderEmbedding, presets={
    "autoencoder-fast": FAST,  # the authors' model and loss, started from SVD, in seconds on a CPU
    "autoencoder-elu": {**FAST, "activation": "elu"},
    # the authors' follow-up: LeakyReLU encoder, Tanh decoder, each row rescaled to its stored norm
    "autoencoder-leaky": {**FAST, "activation": "leaky-tanh", "row_norms": True},
})
