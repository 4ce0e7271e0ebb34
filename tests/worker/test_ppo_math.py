"""PPO's mathematics against values computed by hand, and the masks GPT-2's pad == eos needs."""

from __future__ import annotations

import math

import pytest
import torch

from prefloop.errors import InputError
from worker.ppo import core
from worker.ppo.config import PPOConfig


def close(actual, expected, tol=1e-6):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert torch.allclose(actual, expected, atol=tol), f"{actual.tolist()} != {expected.tolist()}"


def test_gae_and_returns_by_hand():
    """GAE with gamma 1, lambda 0.5: A2=0.5, A1=0.25, A0=0.125; returns = A + V."""
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    adv, ret = core.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    close(adv, [[0.125, 0.25, 0.5]])
    close(ret, [[0.625, 0.75, 1.0]])


def test_gae_with_discount():
    """gamma 0.9, lambda 1: A1 = 2, A0 = 1 + 0.9 * 2 = 2.8."""
    adv, ret = core.gae(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.9, lam=1.0)
    close(adv, [[2.8, 2.0]])
    close(ret, [[2.8, 2.0]])


def test_gae_ignores_padding_after_the_response():
    """Rewards and values on padding never leak into the real tokens before it."""
    rewards = torch.tensor([[0.0, 1.0, 99.0]])
    values = torch.tensor([[0.5, 0.5, 7.0]])
    adv, ret = core.gae(rewards, values, torch.tensor([[1, 1, 0]]), gamma=1.0, lam=0.5)
    close(adv, [[0.25, 0.5, 0.0]])
    close(ret, [[0.75, 1.0, 0.0]])


def test_masked_whitening():
    """Mean 2 and unbiased std 1 over the real entries; padding stays 0."""
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    close(core.masked_whiten(values, mask), [[-1.0, 0.0, 1.0, 0.0]], tol=1e-5)
    close(core.masked_whiten(values, mask, shift_mean=False), [[1.0, 2.0, 3.0, 0.0]], tol=1e-5)


def test_adaptive_kl_controller():
    """beta *= 1 + clip(KL/target - 1, +-0.2) * n/horizon, from init 0.1, target 6, horizon 10000."""
    up = core.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert up.update(12.0, 64) == pytest.approx(0.1 * (1 + 0.2 * 64 / 10000))  # error clipped at +0.2
    down = core.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert down.update(3.0, 64) == pytest.approx(0.1 * (1 - 0.2 * 64 / 10000))  # -0.5 clipped at -0.2
    small = core.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert small.update(6.6, 64) == pytest.approx(0.1 * (1 + 0.1 * 64 / 10000))
    fixed = core.kl_controller(0.1, None, 10000)
    assert fixed.update(100.0, 64) == 0.1 and isinstance(core.kl_controller(0.1, 6.0, 10), core.AdaptiveKLController)


def test_clipped_policy_loss():
    """Ratio 1.5: A=+1 is clipped to -1.2, A=-1 keeps 1.5; loss is their mean, half the tokens clipped."""
    new = torch.tensor([[math.log(1.5), math.log(1.5)]])
    old = torch.zeros(1, 2)
    loss, clipfrac, approx_kl = core.policy_loss(new, old, torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.2)
    close(loss, (-1.2 + 1.5) / 2)
    close(clipfrac, 0.5)
    close(approx_kl, 0.5 * math.log(1.5) ** 2)
    # ratio 0.5: A=+1 keeps -0.5 (unclipped), A=-1 is pessimistically clipped to 0.8
    loss, clipfrac, _ = core.policy_loss(
        torch.full((1, 2), math.log(0.5)), old, torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.2
    )
    close(loss, (-0.5 + 0.8) / 2)
    close(clipfrac, 0.5)


def test_policy_loss_ignores_padding():
    """A masked token with a huge advantage changes nothing."""
    new, old = torch.tensor([[0.1, 5.0]]), torch.zeros(1, 2)
    loss, clipfrac, _ = core.policy_loss(new, old, torch.tensor([[1.0, 1000.0]]), torch.tensor([[1, 0]]), 0.2)
    close(loss, -math.exp(0.1))
    close(clipfrac, 0.0)


def test_clipped_value_loss():
    """Old value 0, clip 0.2: a jump to 1 is clipped to 0.2, loss 0.5*0.64; a step to 0.1 is not."""
    loss, clipfrac = core.value_loss(
        torch.tensor([[1.0]]), torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2
    )
    close(loss, 0.32)
    close(clipfrac, 1.0)
    loss, clipfrac = core.value_loss(
        torch.tensor([[0.1]]), torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2
    )
    close(loss, 0.5 * 0.81)
    close(clipfrac, 0.0)


def test_per_token_kl_rewards():
    """r_t = -beta (logp - logp_ref); the score lands on the last real token, not on padding."""
    rewards, kl = core.per_token_rewards(
        torch.tensor([2.0]),
        torch.tensor([[-1.0, -2.0, -3.0]]),
        torch.tensor([[-1.5, -2.0, -1.0]]),
        torch.tensor([[1, 1, 0]]),
        0.1,
    )
    close(kl, [[0.5, 0.0, 0.0]])
    close(rewards, [[-0.05, 2.0, 0.0]])


def test_entropy_and_logprobs_from_logits():
    """Uniform over 4: entropy ln 4; logits (0, ln 3) give p = 3/4 to the second token."""
    close(core.entropy_from_logits(torch.zeros(1, 1, 4)), [[math.log(4)]])
    close(core.logprobs_from_logits(torch.tensor([[[0.0, math.log(3.0)]]]), torch.tensor([[1]])), [[math.log(0.75)]])


def test_running_moments_match_the_whole_stream():
    """Two batches [1,2,3] and [4,5] give the mean 3 and variance 2 of 1..5."""
    m = core.RunningMoments()
    m.update(torch.tensor([1.0, 2.0, 3.0]))
    m.update(torch.tensor([4.0, 5.0]))
    assert m.mean == pytest.approx(3.0) and m.var == pytest.approx(2.0)
    close(m.normalize(torch.tensor([3.0 + math.sqrt(2)])), [1.0])


def test_response_mask_keeps_the_eos_when_pad_is_eos():
    """With pad == eos == 0, the EOS that ends a response is a real token; what follows is padding."""
    responses = torch.tensor([[5, 0, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]])
    mask, ended = core.response_mask(responses, eos_token_id=0)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]
    # the naive mask drops the EOS and makes an immediate EOS an empty response
    assert (responses != 0).long().tolist() != mask.tolist()


def test_sample_masks_and_pads_after_the_first_eos():
    """sample() cuts each response after its first EOS and pads to max_new_tokens, keeping the EOS."""
    from worker.ppo.rollout import sample

    class ScriptedLM:  # stands in for generate(); the test is about what sample() does with its output
        def generate(self, input_ids, attention_mask, generation_config):
            assert generation_config.top_k == 0 and generation_config.top_p == 1.0 and generation_config.do_sample
            tail = torch.tensor([[7, 0, 9], [7, 8, 9]])  # row 0: EOS (0), then a token after it
            return torch.cat([input_ids, tail], dim=1)

    query = torch.tensor([[0, 3], [4, 3]])  # left padding with pad == eos
    responses, mask, ended = sample(
        ScriptedLM(), query, torch.tensor([[0, 1], [1, 1]]), max_new_tokens=4, eos_token_id=0, pad_token_id=0
    )
    assert responses.tolist() == [[7, 0, 0, 0], [7, 8, 9, 0]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]  # the pad added after row 1 is no EOS
    assert ended.tolist() == [True, False]


def test_left_padding_does_not_change_log_probs(tiny_model_dir):
    """A prompt scores the same response identically with and without left padding."""
    from prefloop.models import load_causal_lm
    from worker.ppo.model import PolicyValueModel

    torch.manual_seed(0)
    model = PolicyValueModel(load_causal_lm(tiny_model_dir, device=torch.device("cpu")))
    prompt, response = torch.tensor([[11, 12, 13]]), torch.tensor([[21, 22]])
    ids = torch.cat([prompt, response], 1)
    logits, values = model(ids, torch.ones_like(ids), 3)
    padded = torch.cat([torch.tensor([[0, 0]]), ids], 1)
    logits_p, values_p = model(padded, torch.tensor([[0, 0, 1, 1, 1, 1, 1]]), 5)
    close(core.logprobs_from_logits(logits, response), core.logprobs_from_logits(logits_p, response), tol=1e-4)
    assert values.shape == values_p.shape == (1, 2)


def test_config_overrides_and_validation():
    """Knobs are overridden by name (strings converted); unknown knobs and bad batch sizes are errors."""
    cfg = PPOConfig.from_overrides(
        {"steps": "3", "target_kl": "none", "whiten_advantages": "false", "learning_rate": 1e-4}
    )
    assert cfg.steps == 3 and cfg.target_kl is None and cfg.whiten_advantages is False and cfg.learning_rate == 1e-4
    with pytest.raises(InputError, match="no knob"):
        PPOConfig.from_overrides({"stepz": 1})
    with pytest.raises(InputError, match="multiple"):
        PPOConfig(rollout_batch_size=10, mini_batch_size=4, micro_batch_size=4)
