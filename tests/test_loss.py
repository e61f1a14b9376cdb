"""The SAD loss against hand-computed values, the standard LM loss, gradients and accumulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepcoder.train.loss import IGNORE_INDEX, sad_loss


def setup(seed: int = 0, batch: int = 2, length: int = 7, vocab: int = 11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=g, requires_grad=True)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    reason = torch.zeros(batch, length, dtype=torch.long)
    action = torch.zeros(batch, length, dtype=torch.long)
    reason[:, 1:4] = 1
    action[:, 4:6] = 1
    labels = torch.where((reason + action).bool(), ids, torch.full_like(ids, IGNORE_INDEX))
    return logits, ids, labels, reason, action


def test_hand_computed_span_mean() -> None:
    # one sequence, vocab 2; positions 1 (reason) and 2 (act) are trained
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0], [0.0, 0.0]]], requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, 1, 0]])
    reason = torch.tensor([[0, 1, 0]])
    action = torch.tensor([[0, 0, 1]])
    loss, parts = sad_loss(logits, labels, reason, action, lambda_reason=2.0, lambda_act=0.5)
    # position 0 predicts token 1 from uniform logits: ln 2; position 1 predicts token 0 with p=3/4
    assert parts["loss_reason"].item() == pytest.approx(math.log(2))
    assert parts["loss_act"].item() == pytest.approx(-math.log(0.75))
    assert loss.item() == pytest.approx(2.0 * math.log(2) + 0.5 * -math.log(0.75))
    assert parts["tokens_reason"].item() == 1 and parts["accuracy_act"].item() == 1.0


def test_token_mean_with_unit_weights_is_the_standard_causal_lm_loss() -> None:
    logits, _, labels, reason, action = setup()
    loss, _ = sad_loss(logits, labels, reason, action, normalize="token_mean")
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                ignore_index=IGNORE_INDEX)
    assert abs(loss.item() - reference.item()) < 1e-6


def test_span_mean_averages_each_kind_over_its_own_tokens() -> None:
    logits, _, labels, reason, action = setup()
    loss, parts = sad_loss(logits, labels, reason, action, lambda_reason=0.3, lambda_act=1.7)
    assert loss.item() == pytest.approx(0.3 * parts["loss_reason"].item() + 1.7 * parts["loss_act"].item())


def test_zero_weight_span_gets_zero_gradient() -> None:
    logits, _, labels, reason, action = setup()
    loss, _ = sad_loss(logits, labels, reason, action, lambda_reason=0.0, lambda_act=1.0)
    loss.backward()
    predicts_reason = reason[:, 1:].bool()  # logits at t predict token t+1
    assert torch.all(logits.grad[:, :-1][predicts_reason] == 0)
    assert logits.grad[:, :-1][action[:, 1:].bool()].abs().sum() > 0


def test_empty_span_is_zero_not_nan() -> None:
    logits, _, labels, reason, _ = setup()
    no_action = torch.zeros_like(reason)
    for normalize in ("span_mean", "token_mean"):
        loss, parts = sad_loss(logits, labels, reason, no_action, normalize=normalize)
        assert torch.isfinite(loss) and parts["loss_act"].item() == 0.0
    nothing = torch.zeros_like(reason)
    loss, _ = sad_loss(logits, labels, nothing, nothing)
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


@pytest.mark.parametrize("normalize", ["span_mean", "token_mean"])
def test_invariant_to_gradient_accumulation(normalize) -> None:
    logits, _, labels, reason, action = setup(batch=4)
    full, _ = sad_loss(logits, labels, reason, action, lambda_reason=0.7, lambda_act=1.3, normalize=normalize)
    (full_grad,) = torch.autograd.grad(full, logits)
    counts = {"reason": int(reason[:, 1:].sum()), "act": int(action[:, 1:].sum())}
    items = counts if normalize == "span_mean" else sum(counts.values())
    total = 0.0
    for rows in (slice(0, 1), slice(1, 3), slice(3, 4)):  # uneven micro-batches
        part, _ = sad_loss(logits[rows], labels[rows], reason[rows], action[rows], lambda_reason=0.7,
                           lambda_act=1.3, normalize=normalize, num_items_in_batch=items)
        total = total + part
    (accumulated_grad,) = torch.autograd.grad(total, logits)
    assert total.item() == pytest.approx(full.item(), abs=1e-6)
    assert torch.allclose(accumulated_grad, full_grad, atol=1e-7)


def test_chunked_cross_entropy_matches() -> None:
    logits, _, labels, reason, action = setup(length=13)
    plain, _ = sad_loss(logits, labels, reason, action)
    chunked, _ = sad_loss(logits, labels, reason, action, chunk_size=4)
    assert chunked.item() == pytest.approx(plain.item(), abs=1e-6)


def test_white_box_kl_is_zero_against_itself_and_topk_matches_full() -> None:
    logits, _, labels, reason, action = setup(vocab=6)
    same, _ = sad_loss(logits, labels, reason, action, teacher_logits=logits.detach())
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    teacher = torch.randn_like(logits)
    full_kl, _ = sad_loss(logits, labels, reason, action, teacher_logits=teacher)
    logprobs = F.log_softmax(teacher, dim=-1)
    ids = torch.arange(6).expand(*logits.shape[:2], 6)
    topk_kl, _ = sad_loss(logits, labels, reason, action, teacher_topk=(ids, logprobs))  # k = vocab
    assert topk_kl.item() == pytest.approx(full_kl.item(), abs=1e-5) and full_kl.item() > 0


def test_observation_term_and_bad_arguments() -> None:
    logits, ids, labels, reason, action = setup()
    observation = torch.zeros_like(reason)
    observation[:, 6] = 1
    base, _ = sad_loss(logits, labels, reason, action)
    with_obs, parts = sad_loss(logits, labels, reason, action, observation_mask=observation, input_ids=ids,
                               lambda_obs=0.5)
    assert with_obs.item() == pytest.approx(base.item() + 0.5 * parts["loss_observation"].item())
    with pytest.raises(ValueError, match="observation_mask"):
        sad_loss(logits, labels, reason, action, lambda_obs=1.0)
    with pytest.raises(ValueError, match="per-span counts"):
        sad_loss(logits, labels, reason, action, num_items_in_batch=10)
    with pytest.raises(ValueError, match="normalize"):
        sad_loss(logits, labels, reason, action, normalize="mean")  # type: ignore[arg-type]
