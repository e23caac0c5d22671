"""Evaluations, side by side: each takes (model, tokenizer, ...) and returns a result dataclass."""
