"""Variational Preference Learning (Poddar et al. 2024) on frozen embeddings: an encoder reads a set of one user's
labelled pairs and gives a Gaussian posterior over a latent user vector z; the reward head is conditioned on z. Trained
as a VAE over users: for each user a context set and disjoint target pairs are drawn from the user's training pairs,
z is sampled from the context's posterior (reparameterised), and the loss is the targets' Bradley-Terry loss plus
beta * KL(q(z | context) || N(0, I))."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from personalign.personas.preference_encoder import PreferenceEncoder, gaussian_kl, pair_features
from personalign.reward_models.core import RewardHead, bt_loss, build, check_fitted, draw_seed, tensors, torch_generator
from personalign.reward_models.data import PreferenceData
from personalign.reward_models.episodes import eligible_users, episode_batch, evaluation_context


class _VPLNet(nn.Module):
    def __init__(self, dim: int, hidden: int, latent_dim: int, encoder_hidden: int, interaction: bool):
        super().__init__()
        self.posterior = PreferenceEncoder(3 * dim, encoder_hidden, latent_dim)
        self.head = RewardHead(dim, hidden, cond_dim=latent_dim, interaction=interaction)


class VPL:
    """VPL reward model. At evaluation a user's z is the posterior mean given up to `max_context` of the user's
    TRAINING pairs (or of the pairs in `context` passed to `margins`, e.g. a new user's few labelled pairs); a user
    with no context pairs gets the prior mean z = 0.

    The head has the bilinear user term by default (`interaction`, RewardHead): a z only concatenated to the pair's
    features shifts both candidates' hidden units alike, so it reaches the margin r(y_w) - r(y_l) only through the
    MLP's curvature; on 384-d sentence embeddings that is ~0, the encoder gets no gradient, the KL term pulls every
    posterior to the prior and the model is a Vanilla RM (0.653 at 30, 100 and 300 context pairs alike). The term
    z . P(f_w - f_l) puts z in the margin to first order."""

    name = "vpl"

    def __init__(
        self,
        latent_dim: int = 8,
        hidden: int = 64,
        encoder_hidden: int = 64,
        beta: float = 0.01,
        steps: int = 400,
        users_per_step: int = 16,
        context_size: tuple[int, int] = (8, 64),
        targets_per_user: int = 32,
        max_context: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        interaction: bool = True,
    ):
        self.latent_dim, self.hidden, self.encoder_hidden, self.beta = latent_dim, hidden, encoder_hidden, beta
        self.steps, self.users_per_step, self.context_size = steps, users_per_step, context_size
        self.targets_per_user, self.max_context = targets_per_user, max_context
        self.lr, self.weight_decay, self.interaction = lr, weight_decay, interaction
        self.history_: list[float] = []

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> VPL:
        init_seed, noise_seed, episode_seed, self.context_seed_ = (draw_seed(rng) for _ in range(4))
        users = eligible_users(train)
        if not users:
            raise ValueError("VPL needs at least one user with two or more training pairs")
        self.net_ = build(
            init_seed, lambda: _VPLNet(train.dim, self.hidden, self.latent_dim, self.encoder_hidden, self.interaction)
        )
        self.train_ = train
        x, yw, yl = tensors(train)
        feats = pair_features(x, yw, yl)
        gen, episodes = torch_generator(noise_seed), np.random.default_rng(episode_seed)
        names = sorted(users)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net_.train()
        self.history_ = []
        for _ in range(self.steps):
            c_idx, c_mask, t_idx, t_mask = episode_batch(
                users, names, self.users_per_step, self.context_size, self.targets_per_user, episodes
            )
            mu, logvar = self.net_.posterior(feats[c_idx], c_mask.float())
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
            zt = z.unsqueeze(1).expand(-1, t_idx.shape[1], -1)[t_mask]
            rows = t_idx[t_mask]
            nll = bt_loss(self.net_.head.margin(x[rows], yw[rows], yl[rows], zt))
            loss = nll + self.beta * gaussian_kl(mu, logvar)
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history_.append(float(loss.detach()))
        self.net_.eval()
        return self

    def user_latent(self, user: str, context: PreferenceData | None = None) -> np.ndarray:
        """The posterior mean z of `user` given its pairs in `context` (default: the training pairs)."""
        check_fitted(self, "net_")
        context = self.train_ if context is None else context
        rows = evaluation_context(context, user, self.max_context, self.context_seed_)
        if len(rows) == 0:
            return np.zeros(self.latent_dim, dtype=np.float32)
        x, yw, yl = tensors(context.subset(rows))
        with torch.no_grad():
            mu, _ = self.net_.posterior(pair_features(x, yw, yl).unsqueeze(0), torch.ones(1, len(rows)))
        return mu[0].numpy()

    def margins(self, data: PreferenceData, context: PreferenceData | None = None) -> np.ndarray:
        check_fitted(self, "net_")
        out = np.zeros(len(data))
        with torch.no_grad():
            for user, rows in data.user_index().items():
                z = torch.from_numpy(self.user_latent(user, context)).unsqueeze(0)
                out[rows] = self.net_.head.margin(*tensors(data.subset(rows)), z).numpy()
        return out
