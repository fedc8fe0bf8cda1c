"""Temperature scaling: the one number that turns a network's scores into probabilities that hold on held-out
images (Guo et al., 2017)."""

from __future__ import annotations

import torch


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Temperature T minimising the validation NLL of softmax(logits / T) (Guo et al., 2017)."""
    logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
    if bool((logits.argmax(dim=1) == targets).all()):
        return 1.0  # no validation errors: the NLL keeps falling as T -> 0, so there is no temperature to fit
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
