"""What the embedding-based reward models share: seeding from a numpy Generator, the pair features, the small
reward head and a Bradley-Terry training loop (Adam, minibatches, fixed epochs, CPU)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from personalign.reward_models.data import PreferenceData, UnseenUserError


def draw_seed(rng: np.random.Generator) -> int:
    """A 31-bit seed drawn from `rng` (so one passed Generator seeds everything a fit does)."""
    return int(rng.integers(0, 2**31 - 1))


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(seed: int, factory: Callable[[], nn.Module]) -> nn.Module:
    """`factory()` with its parameters initialised from `seed`, leaving torch's global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def tensors(data: PreferenceData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt, chosen, rejected) embeddings as float32 tensors."""
    return tuple(torch.from_numpy(a) for a in (data.prompt_emb, data.chosen_emb, data.rejected_emb))


def response_features(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[x, y, x*y] of a prompt and a response embedding, rescaled by sqrt(d) so that unit vectors give entries
    of order one."""
    scale = x.shape[-1] ** 0.5
    x, y = x * scale, y * scale
    return torch.cat([x, y, x * y], dim=-1)


class RewardHead(nn.Module):
    """r(x, y[, c]) = MLP([x, y, x*y, c]) + c . P[x, y, x*y]: an MLP over the pair features, optionally conditioned on
    a user vector c (one-hot id, learned user embedding or latent z) concatenated to its input. With
    `interaction`, a bilinear term c . P(features) is added (the user-vector-times-item-vector term of
    collaborative filtering), which lets a conditioned head express opposite preferences with few examples."""

    def __init__(self, dim: int, hidden: int = 64, cond_dim: int = 0, interaction: bool = False):
        super().__init__()
        self.cond_dim = cond_dim
        self.mlp = nn.Sequential(nn.Linear(3 * dim + cond_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.proj = nn.Linear(3 * dim, cond_dim, bias=False) if cond_dim and interaction else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        f = response_features(x, y)
        if self.cond_dim:
            if c is None:
                raise ValueError("this reward head is conditioned on a user vector; pass c")
            c = c.expand(f.shape[0], -1) if c.shape[0] == 1 else c
            r = self.mlp(torch.cat([f, c], dim=-1)).squeeze(-1)
            return r + (c * self.proj(f)).sum(-1) if self.proj is not None else r
        return self.mlp(f).squeeze(-1)

    def margin(self, x, yw, yl, c=None) -> torch.Tensor:
        return self(x, yw, c) - self(x, yl, c)


def bt_loss(margin: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood -log sigma(r_w - r_l), averaged."""
    return -nn.functional.logsigmoid(margin).mean()


def train_minibatches(
    module: nn.Module,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    gen: torch.Generator,
) -> list[float]:
    """Adam over `epochs` shuffled passes of minibatches of row indices 0..n-1 (`loss_of(idx)` gives the loss of
    one minibatch); returns the mean loss of each epoch. Leaves the module in eval mode."""
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / max(n, 1))
    module.eval()
    return history


def user_rows(users: np.ndarray, known: dict[str, int], model: str) -> np.ndarray:
    """Row index of each user in a fitted model's user table; UnseenUserError naming the unknown ones."""

    unknown = sorted({u for u in users if u not in known})
    if unknown:
        raise UnseenUserError(model, unknown)
    return np.asarray([known[u] for u in users], dtype=np.int64)


def check_fitted(model, attribute: str) -> None:
    if getattr(model, attribute, None) is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted; call fit(train, rng) first")
