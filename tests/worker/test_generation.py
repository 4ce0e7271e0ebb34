"""The batched generation engine, on the tiny offline GPT-2."""

from __future__ import annotations

import logging

import pytest
import torch

from prefloop.errors import SettingsError
from worker.generation import MAX_TRIES, Generator, SamplingConfig, counter_uniform, task_seed
from worker.policy import PolicyCache

PROMPTS = [
    "What is the latest news on the stock market?",
    "Cats",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "User: Hi\nAssistant:",
    "Please explain how a language model works.",
    "Good morning!",
]
CONFIG = SamplingConfig(max_new_tokens=12, batch_size=4)


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    torch.set_num_threads(1)
    return Generator.load(str(tiny_model_dir), "pi-base")


def seeds(prompts):
    return [task_seed(p) for p in prompts]


def test_every_prompt_gets_two_distinct_non_empty_answers(gen):
    """Each prompt yields a pair of different, non-empty answers, with what produced them."""
    results = gen.generate(PROMPTS, seeds(PROMPTS), CONFIG)
    assert len(results) == len(PROMPTS)
    for res in results:
        a, b = res.answers
        assert a and b and a != b and a == a.strip() and res.error is None
    meta = gen.metadata(CONFIG, results[0])
    assert meta["policy_version"] == "pi-base" and meta["model"] == gen.source
    assert meta["settings"] == {"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0, "top_k": 50}
    assert meta["seed"] == str(seeds(PROMPTS)[0]) and meta["tries"] >= 1 and meta["truncated"] is False


def test_a_ranking_gets_k_distinct_answers_and_its_first_two_are_the_pairs(gen):
    """k answers per prompt (ANSWERS_PER_PROMPT for a ranking), all distinct and non-empty; the first
    two are exactly what the pair of the same prompt and seed holds (row keys do not depend on k)."""
    results = gen.generate(PROMPTS, seeds(PROMPTS), CONFIG, k=4)
    pairs = gen.generate(PROMPTS, seeds(PROMPTS), CONFIG)
    for res, pair in zip(results, pairs, strict=True):
        assert len(res.answers) == 4 and len(set(res.answers)) == 4 and all(res.answers), res
        if pair.tries == 1 and res.tries == 1:
            assert res.answers[:2] == pair.answers


def test_answers_depend_on_the_seed_not_on_the_batch(gen):
    """A prompt with a given seed gets the same answers alone, in any batch, in any order; another seed differs."""
    batched = [r.answers for r in gen.generate(PROMPTS, seeds(PROMPTS), CONFIG)]
    alone = [gen.generate([p], [s], CONFIG)[0].answers for p, s in zip(PROMPTS[:3], seeds(PROMPTS[:3]))]
    assert alone == batched[:3]
    reordered = gen.generate(PROMPTS[::-1], seeds(PROMPTS)[::-1], SamplingConfig(max_new_tokens=12, batch_size=1))
    assert [r.answers for r in reordered][::-1] == batched
    other = gen.generate(PROMPTS[:1], [seeds(PROMPTS)[0] + 1], CONFIG)[0].answers
    assert other != batched[0]


def test_both_samples_share_one_left_padded_cached_generate_call(gen):
    """Prompts go in batches of GENERATION_BATCH_SIZE with both samples as rows of the same call,
    left-padded, and each new token is one cached forward step."""
    calls = []
    hook = gen.model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append((kwargs["input_ids"].shape, kwargs.get("attention_mask"))),
        with_kwargs=True,
    )
    try:
        results = gen.generate(PROMPTS, seeds(PROMPTS), SamplingConfig(max_new_tokens=5, batch_size=4))
    finally:
        hook.remove()
    prefills = [(shape, mask) for shape, mask in calls if shape[1] > 1]
    assert [shape[0] for shape, _ in prefills][:2] == [8, 4], "2 rows per prompt; 6 prompts in batches of 4"
    assert all(shape[1] == 1 for shape, _ in calls if shape[1] <= 1), "later steps feed one token (KV cache)"
    mask = prefills[0][1]
    assert bool(mask[:, -1].all()) and not bool(mask[:, 0].all()), "padding is on the left"
    assert len(prefills) == 2 or max(r.tries for r in results) > 1


def test_long_prompts_are_cut_from_the_left_with_a_warning(gen, caplog):
    """A prompt longer than the context keeps its end: two prompts that differ only far back answer alike."""
    common = "The quick brown fox jumps over the lazy dog. " * 60  # longer than the context on its own
    long_a, long_b = "Cats are pets. " + common, "Science and history. " + common
    with caplog.at_level(logging.WARNING, logger="worker.generation"):
        a, b = gen.generate([long_a, long_b], [7, 7], CONFIG)
    assert a.truncated and b.truncated and a.answers == b.answers
    assert "keeping the last 244" in caplog.text and "prompt #1" in caplog.text
    assert not gen.generate(["Cats are pets."], [7], CONFIG)[0].truncated
    with pytest.raises(SettingsError, match="MAX_NEW_TOKENS=300"):
        gen.generate(["hi"], [1], SamplingConfig(max_new_tokens=300))


def test_equal_or_empty_answers_are_resampled_a_bounded_number_of_times(gen):
    """Collisions are re-sampled; a prompt that still collides after MAX_TRIES reports an error, no answers."""
    narrow = SamplingConfig(max_new_tokens=1, top_k=4, batch_size=16)
    prompts = [f"Question number {i}:" for i in range(24)]
    results = gen.generate(prompts, seeds(prompts), narrow)
    for res in results:
        assert (res.answers is not None and all(res.answers) and res.answers[0] != res.answers[1]) or (
            res.answers is None and res.tries == MAX_TRIES and "after 4 tries" in res.error
        )
    assert any(res.answers and res.tries > 1 for res in results), "some pair needed a re-sample and got one"
    frozen = gen.generate(["Cats"], [3], SamplingConfig(max_new_tokens=8, temperature=1e-4))[0]
    assert (
        frozen.answers is None and frozen.tries == MAX_TRIES and gen.metadata(narrow, frozen)["error"] == frozen.error
    )


def test_counter_noise_is_uniform_and_a_function_of_key_step_and_token():
    """The sampling noise lies in (0, 1), looks uniform, and is the same however rows are batched."""
    keys = torch.tensor([1, 2, 3, 2**32 - 1], dtype=torch.int64)
    u = counter_uniform(keys, 5, 4096)
    assert u.shape == (4, 4096) and float(u.min()) > 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.02
    assert torch.equal(counter_uniform(keys[1:2], 5, 4096)[0], u[1])
    assert not torch.equal(counter_uniform(keys, 6, 4096), u)


def test_policy_cache_loads_each_source_once(tiny_model_dir, tmp_path):
    """A process keeps loaded policies by source; asking again costs nothing; the oldest is evicted."""
    from cli.tinymodel import build_tiny_gpt2

    other = build_tiny_gpt2(tmp_path / "other", seed=1)
    cache = PolicyCache(size=1)
    first = cache.get(str(tiny_model_dir), "pi-base")
    assert cache.get(str(tiny_model_dir), "pi-base") is first and cache.loads == 1
    assert cache.get(str(other), "pi-x").version == "pi-x" and cache.loads == 2
    assert cache.get(str(tiny_model_dir), "pi-base") is not first and cache.loads == 3
