"""Group Preference Optimization (Zhao et al., ICLR 2024) on frozen embeddings: a small transformer reads a
sequence of context points (a user's labelled pairs: the pair's features plus its preference label) followed by
target points (pairs without a label) and predicts the targets' preferences in context. Targets attend to the
context and to themselves only, so each prediction depends on the context and on that one target, never on the other
targets. Meta-trained over users: each step draws, for a batch of users, a context set and disjoint targets from the
user's training pairs, each pair shown in a random order (label +1 when the first response is the chosen one)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from personalign.core.seeding import stable_seed
from personalign.personas.preference_encoder import pair_features
from personalign.reward_models.core import build, check_fitted, draw_seed, tensors
from personalign.reward_models.data import PreferenceData, UnseenUserError
from personalign.reward_models.episodes import eligible_users, episode_batch, evaluation_context


def oriented(feats: torch.Tensor, signs: torch.Tensor, dim: int) -> torch.Tensor:
    """Pair features [x, a-b, x*(a-b)] of (chosen, rejected) turned into those of the pair shown in the order given
    by `signs` (+1: chosen first, -1: rejected first)."""
    return torch.cat([feats[..., :dim], feats[..., dim:] * signs.unsqueeze(-1)], dim=-1)


class _GPONet(nn.Module):
    def __init__(self, dim: int, d_model: int, layers: int, heads: int, ff: int):
        super().__init__()
        self.embed = nn.Linear(3 * dim, d_model)
        self.label = nn.Parameter(torch.randn(d_model) * 0.1)
        self.query = nn.Parameter(torch.randn(d_model) * 0.1)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 1))

    def forward(self, c_feats, c_labels, c_mask, t_feats, t_mask) -> torch.Tensor:
        """Logits (B, T) that each target's first response is preferred, from context features (B, K, F), labels
        (B, K) in {-1, +1}, masks of real entries (B, K) and (B, T), and target features (B, T, F)."""
        k, t = c_feats.shape[1], t_feats.shape[1]
        seq = torch.cat(
            [self.embed(c_feats) + c_labels.unsqueeze(-1) * self.label, self.embed(t_feats) + self.query], dim=1
        )
        blocked = torch.ones(k + t, k + t, dtype=torch.bool)
        blocked[:, :k] = False  # everyone reads the context
        blocked[k:, k:] = ~torch.eye(t, dtype=torch.bool)  # a target reads itself, not the other targets
        padding = torch.cat([~c_mask, ~t_mask], dim=1)
        h = self.encoder(seq, mask=blocked, src_key_padding_mask=padding)
        return self.out(h[:, k:]).squeeze(-1)


class GPO:
    """GPO preference predictor. At evaluation a user's context is up to `max_context` of the user's TRAINING pairs
    (or of the pairs in `context` passed to `margins`, e.g. a new user's few labelled pairs), each shown in an order
    fixed by the fit's seed and the user; the evaluated pairs are the targets, each scored in both orders:
    margin = (logit(chosen first) - logit(rejected first)) / 2. A user without context pairs raises
    UnseenUserError. The paper uses a 6-layer transformer over LLaMA-2 embeddings; the CPU default is 2 layers."""

    name = "gpo"

    def __init__(
        self,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        ff: int = 128,
        steps: int = 400,
        users_per_step: int = 16,
        context_size: tuple[int, int] = (8, 64),
        targets_per_user: int = 32,
        max_context: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        target_chunk: int = 512,
    ):
        self.d_model, self.layers, self.heads, self.ff = d_model, layers, heads, ff
        self.steps, self.users_per_step, self.context_size = steps, users_per_step, context_size
        self.targets_per_user, self.max_context, self.target_chunk = targets_per_user, max_context, target_chunk
        self.lr, self.weight_decay = lr, weight_decay
        self.history_: list[float] = []

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> GPO:
        init_seed, episode_seed, self.context_seed_ = (draw_seed(rng) for _ in range(3))
        users = eligible_users(train)
        if not users:
            raise ValueError("GPO needs at least one user with two or more training pairs")
        self.dim_ = train.dim
        self.net_ = build(init_seed, lambda: _GPONet(train.dim, self.d_model, self.layers, self.heads, self.ff))
        self.train_ = train
        feats = pair_features(*tensors(train))
        episodes = np.random.default_rng(episode_seed)
        names = sorted(users)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net_.train()
        self.history_ = []
        for _ in range(self.steps):
            c_idx, c_mask, t_idx, t_mask = episode_batch(
                users, names, self.users_per_step, self.context_size, self.targets_per_user, episodes
            )
            c_sign = torch.from_numpy(episodes.choice([-1.0, 1.0], size=c_idx.shape).astype(np.float32))
            t_sign = torch.from_numpy(episodes.choice([-1.0, 1.0], size=t_idx.shape).astype(np.float32))
            logits = self.net_(
                oriented(feats[c_idx], c_sign, self.dim_),
                c_sign,
                c_mask,
                oriented(feats[t_idx], t_sign, self.dim_),
                t_mask,
            )
            loss = nn.functional.binary_cross_entropy_with_logits(logits[t_mask], (t_sign[t_mask] > 0).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history_.append(float(loss.detach()))
        self.net_.eval()
        return self

    def _context(self, user: str, context: PreferenceData):
        rows = evaluation_context(context, user, self.max_context, self.context_seed_)
        if len(rows) == 0:
            raise UnseenUserError("GPO", [user])
        signs = np.random.default_rng(stable_seed(self.context_seed_, "orient", user)).choice([-1.0, 1.0], len(rows))
        signs = torch.from_numpy(signs.astype(np.float32)).unsqueeze(0)
        feats = oriented(pair_features(*tensors(context.subset(rows))).unsqueeze(0), signs, self.dim_)
        return feats, signs, torch.ones(1, len(rows), dtype=torch.bool)

    def margins(self, data: PreferenceData, context: PreferenceData | None = None) -> np.ndarray:
        check_fitted(self, "net_")
        context = self.train_ if context is None else context
        missing = sorted(set(data.user_ids) - set(context.user_ids))
        if missing:
            raise UnseenUserError("GPO", missing)
        out = np.zeros(len(data))
        with torch.no_grad():
            for user, rows in data.user_index().items():
                c_feats, c_signs, c_mask = self._context(user, context)
                feats = pair_features(*tensors(data.subset(rows)))
                for start in range(0, len(rows), self.target_chunk):
                    f = feats[start : start + self.target_chunk]
                    both = torch.cat([f, oriented(f, -torch.ones(len(f)), self.dim_)]).unsqueeze(0)
                    logits = self.net_(c_feats, c_signs, c_mask, both, torch.ones(1, 2 * len(f), dtype=torch.bool))[0]
                    out[rows[start : start + len(f)]] = ((logits[: len(f)] - logits[len(f) :]) / 2).numpy()
        return out
