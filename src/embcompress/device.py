"""Device choice: a GPU when there is one, else the CPU."""

import torch


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def input_device(model) -> torch.device:
    """Where a model's input ids go: its input embedding's device. Under a device map (accelerate) the first
    parameter may sit on another GPU or be offloaded to disk (meta); the embedding's hook says where it runs."""
    getter = getattr(model, "get_input_embeddings", None)
    emb = getter() if getter is not None else None
    hook = getattr(emb, "_hf_hook", None)
    if getattr(hook, "execution_device", None) is not None:
        return torch.device(hook.execution_device)
    for t in [] if emb is None else [*emb.parameters(), *emb.buffers()]:
        if t.device.type != "meta":
            return t.device
    return next(model.parameters()).device
