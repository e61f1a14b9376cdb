"""The SAD loss: per-token losses weighted by span, L = λ_reason·L_reason + λ_act·L_act (+ λ_obs·L_obs).

Inputs are aligned with ``input_ids`` and *unshifted*, as transformers passes ``labels``; the
function shifts them as transformers' causal-LM loss does (position t predicts token t+1).

Per-token loss, computed once and then weighted by the masks:

* black-box teacher (API text only; Groq returns no logprobs): cross-entropy on the teacher's
  tokens;
* white-box teacher: forward KL(p_teacher ‖ p_student) per token (SAD, arXiv 2505.13820), from a
  local teacher's logits over the same vocabulary, or from top-k teacher log-probs cached in the
  dataset (renormalised over the k tokens).

Normalisation (``normalize``):

* ``span_mean`` (default): each span kind is averaged over its own tokens, so λ weighs the *kinds*
  against each other whatever their lengths (a 30-token action counts as much as a 300-token
  thought when both λ are 1).
* ``token_mean``: one average over all trained tokens, each token weighted by its span's λ; with
  every λ = 1 this is exactly the standard causal-LM loss, and λ scales a kind's per-token weight.

An empty span kind contributes 0, never NaN. Gradient accumulation: pass ``num_items_in_batch``
as transformers does (the trained-token count over all micro-batches of the step) for
``token_mean``; for ``span_mean`` pass a dict of per-kind counts (``SADTrainer`` does), and the
sum of the micro-batch losses then equals the loss of the whole batch.

Memory: no full-vocabulary tensor beyond the logits the model made; ``chunk_size`` bounds the
temporary of the log-softmax inside cross-entropy by computing it a slice of positions at a time.
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
KINDS = ("reason", "act", "observation")


def _token_ce(logits: torch.Tensor, targets: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """Cross-entropy per position (0 where the target is ignored), optionally in slices of positions."""
    batch, length, vocab = logits.shape
    if not chunk_size or chunk_size >= length:
        return F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1), reduction="none",
                               ignore_index=IGNORE_INDEX).view(batch, length)
    parts = [F.cross_entropy(logits[:, s:s + chunk_size].reshape(-1, vocab).float(),
                             targets[:, s:s + chunk_size].reshape(-1), reduction="none",
                             ignore_index=IGNORE_INDEX).view(batch, -1)
             for s in range(0, length, chunk_size)]
    return torch.cat(parts, dim=1)


def _token_kl(logits: torch.Tensor, teacher_logits: torch.Tensor | None,
              teacher_topk: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Forward KL(teacher ‖ student) per position."""
    student_logp = F.log_softmax(logits.float(), dim=-1)
    if teacher_logits is not None:
        teacher_logp = F.log_softmax(teacher_logits.float(), dim=-1)
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    ids, logprobs = teacher_topk  # type: ignore[misc]
    teacher_logp = logprobs.float() - torch.logsumexp(logprobs.float(), dim=-1, keepdim=True)
    return (teacher_logp.exp() * (teacher_logp - student_logp.gather(-1, ids.long()))).sum(-1)


def sad_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    reason_mask: torch.Tensor,
    action_mask: torch.Tensor,
    *,
    lambda_reason: float = 1.0,
    lambda_act: float = 1.0,
    normalize: Literal["span_mean", "token_mean"] = "span_mean",
    num_items_in_batch: int | torch.Tensor | Mapping[str, int | torch.Tensor] | None = None,
    observation_mask: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
    lambda_obs: float = 0.0,
    teacher_logits: torch.Tensor | None = None,
    teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SAD loss and its detached parts (per-span losses, token counts, token accuracies).

    ``teacher_logits`` / ``teacher_topk`` (ids and log-probs, ``[B, T, k]``, aligned with
    ``input_ids`` like the labels) switch from cross-entropy to forward KL. ``lambda_obs > 0``
    also trains observation prediction and needs ``observation_mask`` and ``input_ids`` (labels
    hold -100 there).
    """
    if normalize not in ("span_mean", "token_mean"):
        raise ValueError(f"normalize must be 'span_mean' or 'token_mean', got {normalize!r}")
    if lambda_obs and (observation_mask is None or input_ids is None):
        raise ValueError("lambda_obs > 0 needs observation_mask and input_ids")
    if teacher_logits is not None and teacher_topk is not None:
        raise ValueError("give teacher_logits or teacher_topk, not both")

    # Shift the targets, not the logits: slicing logits[:, :-1] and flattening it would copy the
    # whole [B, T, V] tensor. Position t predicts token t+1; the last position predicts nothing.
    def shift(tensor: torch.Tensor, fill: int) -> torch.Tensor:
        return F.pad(tensor[:, 1:], (0, 1), value=fill)

    targets = shift(labels, IGNORE_INDEX)
    masks = {"reason": shift(reason_mask, 0).bool(), "act": shift(action_mask, 0).bool()}
    weights = {"reason": lambda_reason, "act": lambda_act}
    if lambda_obs:
        masks["observation"] = shift(observation_mask, 0).bool()  # type: ignore[arg-type]
        weights["observation"] = lambda_obs
        targets = torch.where(masks["observation"], shift(input_ids, IGNORE_INDEX), targets)  # type: ignore[arg-type]
    trained = torch.zeros_like(targets, dtype=torch.bool)
    for mask in masks.values():
        trained |= mask
    targets = targets.masked_fill(~trained, IGNORE_INDEX)
    shifted = logits

    if teacher_logits is None and teacher_topk is None:
        per_token = _token_ce(logits, targets, chunk_size)
    else:
        per_token = _token_kl(logits, teacher_logits, teacher_topk) * trained

    sums = {kind: (per_token * mask).sum() for kind, mask in masks.items()}
    counts = {kind: mask.sum() for kind, mask in masks.items()}
    zero = per_token.sum() * 0.0  # keeps the graph (and the dtype) even when nothing is trained

    if normalize == "token_mean":
        if isinstance(num_items_in_batch, Mapping):
            denominator = sum(torch.as_tensor(num_items_in_batch[k]) for k in masks)
        elif num_items_in_batch is not None:
            denominator = torch.as_tensor(num_items_in_batch)
        else:
            denominator = sum(counts.values())
        weighted = sum(weights[k] * sums[k] for k in masks)
        loss = weighted / torch.as_tensor(denominator).to(per_token.device).clamp(min=1)
    else:
        if num_items_in_batch is not None and not isinstance(num_items_in_batch, Mapping):
            raise ValueError("span_mean under gradient accumulation needs per-span counts: "
                             "num_items_in_batch={'reason': n, 'act': n}")
        loss = zero
        for kind in masks:
            total = torch.as_tensor(num_items_in_batch[kind]) if num_items_in_batch is not None else counts[kind]
            total = total.to(per_token.device)
            loss = loss + weights[kind] * torch.where(total > 0, sums[kind] / total.clamp(min=1), zero)
    loss = loss + zero

    parts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        predictions = shifted.argmax(-1) if (teacher_logits is None and teacher_topk is None) else None
        for kind, mask in masks.items():
            n = counts[kind]
            parts[f"loss_{kind}"] = (sums[kind] / n.clamp(min=1)).detach()
            parts[f"tokens_{kind}"] = n.detach()
            if predictions is not None:
                correct = ((predictions == targets) & mask).sum()
                parts[f"accuracy_{kind}"] = (correct / n.clamp(min=1)).detach()
    return loss, parts
