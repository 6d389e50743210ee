"""The `vpl` prefix of a multitask model (WikiPersona §4.1 and App. K): a soft prefix of input embeddings computed
from the user's VPL latent instead of a text. VPL's variational encoder (preference_encoder.PreferenceEncoder) reads
the sentence embeddings of a sample of the user's training pairs and gives q(z | pairs); a linear map turns z into
`tokens` input embeddings placed before the prompt. Encoder and map train with the LoRA under the DPO loss plus
kl_weight · KL(q || N(0, I)), each forward drawing `context` pairs from a pool of `pool` per user (App. K: 8 of 16);
at inference z is the posterior mean given the whole pool, so a user no training run saw still gets a prefix from
their own training pairs. The DPO reference is the base model on the prompt alone: the soft prefix belongs to the
trained policy, not to its input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from personalign.core.seeding import stable_seed
from personalign.personas.preference_encoder import PreferenceEncoder, gaussian_kl, pair_features

PREFIXES_FILE = "soft_prefixes.safetensors"  # a vpl run's prefix per user, next to its adapter


@dataclass(frozen=True)
class PairPools:
    """Per user (sorted ids), the pair features of up to `pool` training pairs, zero-padded, with a mask of the
    real ones."""

    users: list[str]
    features: np.ndarray  # (users, pool, 3 · embedding dim)
    mask: np.ndarray  # (users, pool), bool


def pair_pools(records: pd.DataFrame, pool: int, seed: int, embed) -> PairPools:
    """Every user's pool: `pool` of the user's training pairs in a seeded order (all of them when fewer), featurised
    as VPL's reward model does from the sentence embeddings `embed(texts)` of prompt, chosen and rejected."""
    train = records[records.split == "train"].sort_values("id")
    if train.empty:
        raise ValueError("the vpl prefix needs training pairs (records with split 'train'); there are none")
    picked = {}
    for user, rows in train.groupby("user_id", sort=True):
        order = np.random.default_rng(stable_seed(seed, "vpl_pool", user)).permutation(len(rows))[:pool]
        picked[user] = rows.iloc[np.sort(order)]
    users = sorted(picked)
    chosen = pd.concat([picked[u] for u in users])
    x, yw, yl = (torch.from_numpy(embed(list(chosen[c]))) for c in ("prompt", "chosen", "rejected"))
    rows = pair_features(x, yw, yl).numpy()
    features = np.zeros((len(users), pool, rows.shape[1]), np.float32)
    mask = np.zeros((len(users), pool), bool)
    start = 0
    for i, user in enumerate(users):
        n = len(picked[user])
        features[i, :n], mask[i, :n] = rows[start : start + n], True
        start += n
    return PairPools(users, features, mask)


class VPLPrefix(nn.Module):
    """Users' pools → soft prefixes. In training mode each call draws `context` pairs of each user's pool and samples
    z from the posterior (reparameterised); in eval mode z is the posterior mean given the whole pool. The map's bias
    starts at `anchor` (the model's mean input embedding) and its weights at `scale` / sqrt(latent_dim), so an
    initial prefix looks like an ordinary token to the model."""

    def __init__(
        self,
        pools: PairPools,
        hidden_size: int,
        tokens: int,
        latent_dim: int,
        encoder_hidden: int,
        context: int,
        anchor: torch.Tensor,
        scale: float,
        seed: int,
    ):
        super().__init__()
        self.users, self.tokens, self.hidden_size, self.context = pools.users, tokens, hidden_size, context
        self.register_buffer("features", torch.from_numpy(pools.features), persistent=False)
        self.register_buffer("mask", torch.from_numpy(pools.mask), persistent=False)
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = PreferenceEncoder(pools.features.shape[2], encoder_hidden, latent_dim)
            self.project = nn.Linear(latent_dim, tokens * hidden_size)
        with torch.no_grad():
            self.project.weight.normal_(0.0, scale / latent_dim**0.5, generator=self.generator)
            self.project.bias.copy_(anchor.float().repeat(tokens))

    def forward(self, user_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft prefixes (B, tokens, hidden), KL term) for a batch's rows given their users' indices."""
        users, inverse = torch.unique(user_index.cpu(), return_inverse=True)
        mask = self.mask[users.to(self.mask.device)]
        if self.training:
            draw = torch.rand(mask.shape, generator=self.generator).to(mask.device).masked_fill(~mask, -1.0)
            keep = draw.topk(min(self.context, mask.shape[1]), dim=1).indices
            mask = torch.zeros_like(mask).scatter(1, keep, True) & mask
        mu, logvar = self.encoder(self.features[users.to(mask.device)], mask.float())
        z = mu
        if self.training:
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=self.generator).to(mu.device)
        soft = self.project(z).view(len(users), self.tokens, self.hidden_size)
        return soft[inverse.to(soft.device)], gaussian_kl(mu, logvar)

    @torch.no_grad()
    def prefixes(self) -> torch.Tensor:
        """Every user's soft prefix (users, tokens, hidden) from the posterior mean given the whole pool."""
        was_training = self.training
        self.eval()
        soft, _ = self(torch.arange(len(self.users)))
        self.train(was_training)
        return soft

    def checkpoint_state(self) -> dict:
        """What a resumed run needs besides the optimizer: the weights and the generator's state."""
        return {"weights": self.state_dict(), "generator": self.generator.get_state()}

    def restore(self, state: dict) -> None:
        self.load_state_dict(state["weights"])
        self.generator.set_state(state["generator"])


def save_prefixes(path: str | Path, users: list[str], prefixes: torch.Tensor) -> None:
    """The prefixes of a trained vpl run (safetensors, users in the metadata)."""
    from safetensors.torch import save_file

    save_file(
        {"prefixes": prefixes.detach().float().contiguous().cpu()}, str(path), metadata={"users": json.dumps(users)}
    )


def load_prefixes(path: str | Path) -> dict[str, torch.Tensor]:
    """user id → soft prefix (tokens, hidden) of a trained vpl run."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: a vpl run's soft prefixes are missing (stage 3 writes them)")
    with safe_open(str(path), framework="pt") as fh:
        users = json.loads(fh.metadata()["users"])
        prefixes = fh.get_tensor("prefixes")
    return dict(zip(users, prefixes))
