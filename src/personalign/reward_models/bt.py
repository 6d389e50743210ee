"""Bradley-Terry reward models on frozen embeddings (the paper's section 3): one pooled head (Vanilla RM), one head
per user (Individual RM), one head conditioned on the user id (Conditional RM), and Personalized RM (Li et al.
2024: a learned embedding per user plus a generic one, trained on a mix of both losses)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from personalign.core.seeding import stable_seed
from personalign.reward_models.core import (
    RewardHead,
    bt_loss,
    build,
    check_fitted,
    draw_seed,
    tensors,
    torch_generator,
    train_minibatches,
    user_rows,
)
from personalign.reward_models.data import PreferenceData, UnseenUserError


class _BTModel:
    """Hyperparameters shared by the Bradley-Terry models (CPU defaults: seconds on a few thousand pairs)."""

    def __init__(
        self, hidden: int = 64, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0
    ):
        self.hidden, self.epochs, self.batch_size = hidden, epochs, batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.history_: list[float] = []

    def _train(self, module: nn.Module, loss_of, n: int, seed: int) -> list[float]:
        return train_minibatches(
            module,
            loss_of,
            n,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            gen=torch_generator(seed),
        )


class VanillaRM(_BTModel):
    """One reward head fitted on every user's pairs pooled (the non-personalized baseline)."""

    name = "vanilla"

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> VanillaRM:
        init_seed, order_seed = draw_seed(rng), draw_seed(rng)
        self.head_ = build(init_seed, lambda: RewardHead(train.dim, self.hidden))
        x, yw, yl = tensors(train)
        self.history_ = self._train(
            self.head_, lambda i: bt_loss(self.head_.margin(x[i], yw[i], yl[i])), len(train), order_seed
        )
        return self

    def fine_tune(self, data: PreferenceData, rng: np.random.Generator, epochs: int = 1) -> VanillaRM:
        """A copy of this fitted model trained further on `data` for `epochs` passes (same batch size, learning rate
        and weight decay; a fresh Adam; shuffling drawn from `rng`); this model is left unchanged."""
        check_fitted(self, "head_")
        tuned = copy.deepcopy(self)
        x, yw, yl = tensors(data)
        tuned.history_ = self.history_ + train_minibatches(
            tuned.head_,
            lambda i: bt_loss(tuned.head_.margin(x[i], yw[i], yl[i])),
            len(data),
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            gen=torch_generator(draw_seed(rng)),
        )
        return tuned

    def margins(self, data: PreferenceData) -> np.ndarray:
        check_fitted(self, "head_")
        with torch.no_grad():
            return self.head_.margin(*tensors(data)).numpy().astype(np.float64)


class IndividualRM(_BTModel):
    """A separate reward head per user, each fitted on that user's pairs only; each user's head is seeded from the
    fit's seed and the user id, so it does not depend on the other users. Scoring a user without a head raises
    UnseenUserError."""

    name = "individual"

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> IndividualRM:
        base = draw_seed(rng)
        self.heads_: dict[str, RewardHead] = {}
        self.history_ = []
        for user, rows in train.user_index().items():
            seed = stable_seed(base, "individual", user) % 2**31
            head = build(seed, lambda: RewardHead(train.dim, self.hidden))
            x, yw, yl = tensors(train.subset(rows))
            self._train(
                head, lambda i, h=head, x=x, yw=yw, yl=yl: bt_loss(h.margin(x[i], yw[i], yl[i])), len(rows), seed + 1
            )
            self.heads_[user] = head
        return self

    def margins(self, data: PreferenceData) -> np.ndarray:
        check_fitted(self, "heads_")
        unknown = sorted(set(data.user_ids) - set(self.heads_))
        if unknown:
            raise UnseenUserError("IndividualRM", unknown)
        out = np.zeros(len(data))
        with torch.no_grad():
            for user, rows in data.user_index().items():
                out[rows] = self.heads_[user].margin(*tensors(data.subset(rows))).numpy()
        return out


class _UserConditioned(nn.Module):
    def __init__(self, dim: int, hidden: int, n_users: int, user_dim: int | None, interaction: bool):
        super().__init__()
        self.n_users = n_users
        self.embedding = nn.Embedding(n_users, user_dim) if user_dim else None
        self.head = RewardHead(dim, hidden, cond_dim=user_dim or n_users, interaction=interaction)

    def user_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(rows)
        return nn.functional.one_hot(rows, self.n_users).float()

    def margin(self, x, yw, yl, rows):
        return self.head.margin(x, yw, yl, self.user_vectors(rows))


class ConditionalRM(_BTModel):
    """One reward head whose input carries the user id (the paper prepends the id to the prompt; here the id's
    one-hot vector, or a learned id embedding of size `user_dim`, is concatenated to the pair features). Scoring an
    unseen user raises UnseenUserError."""

    name = "conditional"

    def __init__(self, user_dim: int | None = None, interaction: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.user_dim, self.interaction = user_dim, interaction

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> ConditionalRM:
        init_seed, order_seed = draw_seed(rng), draw_seed(rng)
        self.users_ = {u: i for i, u in enumerate(train.users())}
        self.net_ = build(
            init_seed,
            lambda: _UserConditioned(train.dim, self.hidden, len(self.users_), self.user_dim, self.interaction),
        )
        x, yw, yl = tensors(train)
        u = torch.from_numpy(user_rows(train.user_ids, self.users_, "ConditionalRM"))
        self.history_ = self._train(
            self.net_, lambda i: bt_loss(self.net_.margin(x[i], yw[i], yl[i], u[i])), len(train), order_seed
        )
        return self

    def margins(self, data: PreferenceData) -> np.ndarray:
        check_fitted(self, "net_")
        u = torch.from_numpy(user_rows(data.user_ids, self.users_, "ConditionalRM"))
        with torch.no_grad():
            return self.net_.margin(*tensors(data), u).numpy().astype(np.float64)


class PersonalizedRM(_BTModel):
    """Personalized RM (P-RM of Li et al. 2024): a learned embedding per user (size `user_dim`) and a learned generic
    "user 0" embedding, each concatenated to the pair features of one shared head; the loss is
    alpha * BT(user's embedding) + (1 - alpha) * BT(generic embedding). Unseen users are scored with the generic
    embedding."""

    name = "prm"

    def __init__(self, alpha: float = 0.5, user_dim: int = 8, interaction: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"PersonalizedRM: alpha must lie in [0, 1], got {alpha}")
        self.alpha, self.user_dim, self.interaction = alpha, user_dim, interaction

    def fit(self, train: PreferenceData, rng: np.random.Generator) -> PersonalizedRM:
        init_seed, order_seed = draw_seed(rng), draw_seed(rng)
        self.users_ = {u: i + 1 for i, u in enumerate(train.users())}  # row 0: the generic user
        self.net_ = build(
            init_seed,
            lambda: _UserConditioned(train.dim, self.hidden, len(self.users_) + 1, self.user_dim, self.interaction),
        )
        x, yw, yl = tensors(train)
        u = torch.from_numpy(user_rows(train.user_ids, self.users_, "PersonalizedRM"))
        generic = torch.zeros_like(u)

        def loss_of(i):
            own = bt_loss(self.net_.margin(x[i], yw[i], yl[i], u[i])) if self.alpha > 0 else 0.0
            pooled = bt_loss(self.net_.margin(x[i], yw[i], yl[i], generic[i])) if self.alpha < 1 else 0.0
            return self.alpha * own + (1 - self.alpha) * pooled

        self.history_ = self._train(self.net_, loss_of, len(train), order_seed)
        return self

    def margins(self, data: PreferenceData) -> np.ndarray:
        check_fitted(self, "net_")
        u = torch.as_tensor([self.users_.get(user, 0) for user in data.user_ids], dtype=torch.int64)
        with torch.no_grad():
            return self.net_.margin(*tensors(data), u).numpy().astype(np.float64)
