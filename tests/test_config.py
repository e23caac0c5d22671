"""Method configs: sizes, options and weights that are refused."""

import pytest
import torch

from embcompress import EmbcompressError, compress, make_config


@pytest.mark.parametrize(
    "name,opts,match",
    [
        ("svd", {"ratio": 1.0}, "ratio must be > 1"),
        ("svd", {"ratio": 0.5}, "ratio must be > 1"),
        ("svd", {"rank": 0}, "at least 1"),
        ("svd", {"rank": 16}, "between 1 and"),
        ("svd", {}, "exactly one of ratio or rank"),
        ("autoencoder", {"rank": 20}, "between 1 and"),
        ("int", {"bits": 0}, "bits must be between 1 and 8"),
        ("int", {"bits": 4, "group_size": 5}, "must divide the row length"),
        ("int", {"bits": 8, "group_size": 2}, "no saving"),
    ],
)
def test_bad_sizes_are_refused(name, opts, match):
    with pytest.raises(EmbcompressError, match=match):
        compress(torch.randn(30, 16), make_config(name, **opts))


def test_nan_or_inf_weight_is_refused():
    w = torch.randn(30, 16)
    w[3, 4] = float("nan")
    with pytest.raises(EmbcompressError, match="NaN or Inf"):
        compress(w, make_config("svd", rank=2))
    w[3, 4] = float("inf")
    with pytest.raises(EmbcompressError, match="NaN or Inf"):
        compress(w, make_config("int", bits=4))


def test_unknown_method_and_option_are_refused():
    with pytest.raises(EmbcompressError, match="choose one of"):
        make_config("pca")
    with pytest.raises(EmbcompressError, match="has no option"):
        make_config("svd", rank=3, bogus=1)
