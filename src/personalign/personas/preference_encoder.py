"""VPL's user encoder (Poddar et al. 2024), shared by the VPL reward model (reward_models.vpl) and the `vpl` soft
prefix of a multitask policy (soft_prefix): a labelled pair's features from sentence embeddings, and the variational
encoder that turns a set of one user's pairs into a Gaussian posterior over a latent user vector z."""

from __future__ import annotations

import torch
from torch import nn


def pair_features(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[x, a-b, x*(a-b)] of a prompt and two responses (ordered: `a` first), rescaled by sqrt(d) like
    reward_models.core.response_features."""
    scale = x.shape[-1] ** 0.5
    x, d = x * scale, (a - b) * scale
    return torch.cat([x, d, x * d], dim=-1)


class PreferenceEncoder(nn.Module):
    """q(z | a user's labelled pairs): each pair's features (`pair_features`, 3 · dim) through an MLP, mean-pooled
    over the real pairs, then the Gaussian posterior's mean and log-variance."""

    def __init__(self, feature_dim: int, hidden: int, latent_dim: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.stats = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) from context pair features (U, K, F) with mask (U, K)."""
        h = self.encoder(feats) * mask.unsqueeze(-1)
        pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        mu, logvar = self.stats(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 8.0)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the latent dimensions, averaged over rows."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()
