"""Personalized reward models (the eight methods of "When Personalization Meets Reality", section 3) behind one
interface: `fit(train, rng) -> self` and `margins(data) -> r(x, y_w) - r(x, y_l)` per pair (accuracy = mean of
margin > 0; `evaluate` gives the per-pair table). By default they work on frozen sentence embeddings (fast on a CPU);
`LoRARewardModel` is the paper's own LoRA-on-an-LLM set-up for a GPU. Imports core, lm, stats, data, personas and
evaluation.

- VanillaRM, IndividualRM, ConditionalRM, PersonalizedRM (bt.py): Bradley-Terry heads, pooled / per user / user id
  in the input / learned user embeddings plus a generic one.
- VPL (vpl.py): a variational encoder of the user's pairs conditions the reward head.
- GPO (gpo.py): a transformer predicting preferences in context, meta-trained over users.
- RAGJudge (rag.py): top-3 same-user training pairs by prompt similarity in a judge's context
  (EmbeddingContextJudge, or CausalLMJudge on a local LM).
- LoRARewardModel (lora.py): AutoModelForSequenceClassification + LoRA + trl's RewardTrainer.

Everything random is drawn from the Generator passed to `fit`: the same seed gives the same margins."""

from __future__ import annotations

from collections.abc import Callable

from personalign.reward_models.bt import ConditionalRM, IndividualRM, PersonalizedRM, VanillaRM
from personalign.reward_models.data import PreferenceData, UnseenUserError, evaluate, preference_data
from personalign.reward_models.gpo import GPO
from personalign.reward_models.lora import LoRARewardModel
from personalign.reward_models.rag import CausalLMJudge, EmbeddingContextJudge, RAGJudge
from personalign.reward_models.vpl import VPL

# name -> factory(**hyperparameters) -> unfitted model. "lora" needs model_path=...; "rag" takes judge=... (default:
# EmbeddingContextJudge).
REWARD_MODELS: dict[str, Callable[..., object]] = {
    "vanilla": VanillaRM,
    "individual": IndividualRM,
    "conditional": ConditionalRM,
    "prm": PersonalizedRM,
    "vpl": VPL,
    "gpo": GPO,
    "rag": RAGJudge,
    "lora": LoRARewardModel,
}


def make_reward_model(name: str, **kwargs):
    """An unfitted model from the registry; ValueError naming the known models for an unknown name."""
    if name not in REWARD_MODELS:
        raise ValueError(f"unknown reward model {name!r}; known: {', '.join(REWARD_MODELS)}")
    return REWARD_MODELS[name](**kwargs)


__all__ = [
    "REWARD_MODELS",
    "CausalLMJudge",
    "ConditionalRM",
    "EmbeddingContextJudge",
    "GPO",
    "IndividualRM",
    "LoRARewardModel",
    "PersonalizedRM",
    "PreferenceData",
    "RAGJudge",
    "UnseenUserError",
    "VPL",
    "VanillaRM",
    "evaluate",
    "make_reward_model",
    "preference_data",
]
