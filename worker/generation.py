"""Batched answer-pair generation: the engine behind the worker's prefill job and `prefloop
import-prompts`.

What a GPU wants: prompts are sorted by length and batched (GENERATION_BATCH_SIZE prompts per
`generate` call), each prompt occupies two adjacent rows of the same call (both samples of a pair
come from one forward pass), left padding with the family's pad id, the KV cache on, bf16 on a GPU.

Model families: a prompt is a `prefloop.family.Conversation`, rendered by the policy's own
tokenizer (its chat template with the generation prompt when it has one; CHAT_TEMPLATE overrides;
GPT-2 gets the built-in format) through `family.generation_ids`. Generation stops at any of the
model's EOS ids (`family.eos_ids`: end of turn and end of text on instruct models), and answers
are decoded with `family.decode_answer`, so they never hold template or special tokens.

Reproducibility: sampling is Gumbel-max with counter-based noise. Row r draws its noise from
hash(row key, step, token id), and the row key comes from the task's seed, the sample index
(0 or 1) and the attempt. A row's tokens therefore depend only on its prompt, its seed, the model
and the sampling settings, not on which other prompts share the batch, the batch size or the
order (`test_generation.py` holds this). Same model + settings + seed -> same answers, up to the
floating-point effect of padding on the logits (none seen on CPU in fp32; bf16 on a GPU can flip
a near-tie).

The two answers of a task must be non-empty and different: offending rows are re-sampled with the
next attempt's key, at most MAX_TRIES attempts in all; a task that still fails gets `error` set
and no answers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from prefloop.errors import SettingsError
from prefloop.family import Conversation, decode_answer, eos_ids, generation_ids, pad_id
from prefloop.settings import Settings

if TYPE_CHECKING:
    import torch
    from transformers import LogitsProcessor

logger = logging.getLogger(__name__)

MAX_TRIES = 4
"""Attempts per answer before a task is reported as failed (re-sampling empty or equal answers)."""
_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SamplingConfig:
    """The generation knobs, recorded with every answer pair."""

    max_new_tokens: int = 50
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    batch_size: int = 32  # prompts per generate() call (2 rows each)

    @classmethod
    def from_settings(cls, settings: Settings) -> SamplingConfig:
        return cls(
            settings.max_new_tokens,
            settings.temperature,
            settings.top_p,
            settings.top_k,
            settings.generation_batch_size,
        )

    def recorded(self) -> dict[str, Any]:
        """What a task's metadata keeps (batch size does not change the answers)."""
        out = asdict(self)
        out.pop("batch_size")
        return out


@dataclass
class Generation:
    """One task's answers (a pair, or K for a ranking), or the reason it has none."""

    answers: tuple[str, ...] | None
    seed: int
    tries: int
    truncated: bool
    error: str | None = None


def task_seed(*parts: Any) -> int:
    """A stable 63-bit seed from anything that identifies a task (prompt key, task id)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def row_key(seed: int, sample: int, attempt: int) -> int:
    """The 32-bit key of one sampled row: sample 0/1 of a pair, attempt 0..MAX_TRIES-1."""
    digest = hashlib.sha256(f"{seed}:{sample}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Mueller's), on int64 tensors holding values < 2**32: every product
    stays below 2**59, so nothing overflows on any device."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def counter_uniform(keys: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """(B,) int64 keys -> (B, V) float32 uniforms in (0, 1), a pure function of (key, step, token)."""
    import torch

    k = _mix32((keys + step * 0x9E3779B9) & _M32)  # (B,)
    tokens = _mix32(torch.arange(vocab, device=keys.device, dtype=torch.int64) + 0x632BE5AB)  # (V,)
    bits = _mix32(_mix32(k[:, None] ^ tokens[None, :]))  # (B, V)
    return ((bits >> 9).to(torch.float32) + 0.5) / float(1 << 23)  # 23 bits: never 0 or 1 in fp32


def _sampler(keys: torch.Tensor, start_len: int, config: SamplingConfig) -> LogitsProcessor:
    """A logits processor that samples each row with its own key (Gumbel-max); `generate` runs
    greedy on top of it, so argmax picks exactly the sampled token."""
    import torch
    from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(config.temperature)] if config.temperature != 1.0 else []
    if config.top_k > 0:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))

    class SeededSampler(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:  # (B, T), (B, V) fp32
            for warp in warpers:
                scores = warp(input_ids, scores)
            logp = torch.log_softmax(scores.float(), dim=-1)
            u = counter_uniform(keys, input_ids.shape[1] - start_len, scores.shape[-1])
            return logp - torch.log(-torch.log(u))  # + Gumbel noise; -inf stays -inf

    return SeededSampler()


class Generator:
    """A causal LM and its tokenizer, ready to produce answer pairs. Load once per process."""

    def __init__(self, model: Any, tokenizer: Any, *, source: str, version: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids(tokenizer, model)
        self.pad_id = pad_id(tokenizer)
        self.source = source
        self.version = version
        self.loaded_pid = os.getpid()  # the process that read the weights (the worker parent when preloaded)

    @classmethod
    def load(cls, source: str, version: str, *, device: str = "cpu") -> Generator:
        """Load on `device` ("cpu" in a worker parent: it must never touch CUDA before forking)."""
        import torch

        from prefloop.family import PADDING_SIDE
        from prefloop.models import default_dtype, load_causal_lm, load_tokenizer

        dev = torch.device(device)
        tokenizer = load_tokenizer(source, padding_side=PADDING_SIDE["generate"])
        model = load_causal_lm(source, device=dev, dtype=default_dtype(dev), pad_token_id=pad_id(tokenizer))
        return cls(model, tokenizer, source=str(source), version=version)

    @property
    def device(self) -> torch.device:
        device: torch.device = next(self.model.parameters()).device
        return device

    def to(self, device: str = "auto") -> Generator:
        """Move to `device` (auto: CUDA when present) in the dtype that device prefers (bf16 on a GPU)."""
        from prefloop.models import default_dtype, resolve_device

        dev = resolve_device(device)
        if dev != self.device:
            self.model.to(device=dev, dtype=default_dtype(dev))
        return self

    @property
    def context(self) -> int:
        from prefloop.family import context_length

        return context_length(self.model.config, self.tokenizer)

    def metadata(self, config: SamplingConfig, gen: Generation) -> dict[str, Any]:
        """What a task records about its answers: model, policy version, settings, seed."""
        meta = {
            "policy_version": self.version,
            "model": self.source,
            "settings": config.recorded(),
            "seed": str(gen.seed),
            "tries": gen.tries,
            "truncated": gen.truncated,
        }
        if gen.error:
            meta["error"] = gen.error
        return meta

    # --- generation ------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Conversation | str],
        seeds: Sequence[int],
        config: SamplingConfig,
        names: Sequence[str] | None = None,
        on_batch: Callable[[int], None] | None = None,
        *,
        template: str = "",
        k: int = 2,
    ) -> list[Generation]:
        """One Generation per prompt (a Conversation, or a plain prompt string), in order, with `k`
        distinct answers (2 for a pair; ANSWERS_PER_PROMPT for a ranking). `names` label prompts in
        warnings (task ids); `on_batch(done)` is called after each batch of prompts (progress);
        `template` is CHAT_TEMPLATE."""
        import torch

        if len(prompts) != len(seeds):
            raise ValueError("generate() needs one seed per prompt")
        names = names or [f"#{i}" for i in range(len(prompts))]
        ids, truncated = self._encode(prompts, config, names, template)
        answers: list[list[str | None]] = [[None] * k for _ in prompts]
        tries = [0] * len(prompts)
        todo = [(i, s) for i in range(len(prompts)) for s in range(k)]  # rows: (prompt index, sample)
        for attempt in range(MAX_TRIES):
            if not todo:
                break
            for i in {i for i, _ in todo}:
                tries[i] = attempt + 1
            keys = [row_key(seeds[i], s, attempt) for i, s in todo]
            with torch.inference_mode():
                texts = self._sample_rows([ids[i] for i, _ in todo], keys, config, on_batch if attempt == 0 else None)
            for (i, s), text in zip(todo, texts):
                answers[i][s] = text
            todo = [row for i in sorted({i for i, _ in todo}) for row in _bad_rows(i, answers[i])]
        out = []
        for i, row in enumerate(answers):
            ok = all(row) and len(set(row)) == k
            error = (
                None
                if ok
                else (f"no {k} distinct non-empty answers after {MAX_TRIES} tries (last: {', '.join(map(repr, row))})")
            )
            out.append(
                Generation(tuple(str(a) for a in row) if ok else None, int(seeds[i]), tries[i], truncated[i], error)
            )
        return out

    def _encode(
        self, prompts: Sequence[Conversation | str], config: SamplingConfig, names: Sequence[str], template: str = ""
    ) -> tuple[list[list[int]], list[bool]]:
        budget = self.context - config.max_new_tokens
        if budget < 1:
            raise SettingsError(
                f"MAX_NEW_TOKENS={config.max_new_tokens} leaves no room for a prompt in the "
                f"model's {self.context}-token context: lower it"
            )
        ids: list[list[int]] = []
        truncated: list[bool] = []
        for name, prompt in zip(names, prompts):
            tokens = generation_ids(self.tokenizer, prompt, template)
            cut = len(tokens) > budget
            if cut:
                logger.warning(
                    "prompt %s has %d tokens; keeping the last %d (context %d minus MAX_NEW_TOKENS %d)",
                    name,
                    len(tokens),
                    budget,
                    self.context,
                    config.max_new_tokens,
                )
                tokens = tokens[-budget:]  # keep the end: it is what the answer continues
            ids.append(tokens)
            truncated.append(cut)
        return ids, truncated

    def _sample_rows(
        self, rows: list[list[int]], keys: list[int], config: SamplingConfig, on_batch: Callable[[int], None] | None
    ) -> list[str]:
        """Generate one continuation per row. Rows are sorted by length (less padding) and cut into
        batches of 2 * batch_size rows; results come back in the input order."""
        order = sorted(range(len(rows)), key=lambda r: len(rows[r]))
        out: list[str] = [""] * len(rows)
        step = 2 * config.batch_size
        for start in range(0, len(order), step):
            batch = order[start : start + step]
            for r, text in zip(batch, self._generate_batch([rows[r] for r in batch], [keys[r] for r in batch], config)):
                out[r] = text
            if on_batch is not None:
                on_batch(min(len(order), start + step) // 2)
        return out

    def _generate_batch(self, rows: list[list[int]], keys: list[int], config: SamplingConfig) -> list[str]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        pad = self.pad_id
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, T) left-padded
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            input_ids[b, width - len(r) :] = torch.tensor(r)
            attention[b, width - len(r) :] = 1
        device = self.device
        gen_config = GenerationConfig(  # type: ignore[no-untyped-call]  # its __init__ takes unannotated **kwargs
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=pad,
            eos_token_id=list(self.eos_ids),
        )
        sampler = _sampler(torch.tensor(keys, dtype=torch.int64, device=device), width, config)
        output = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            generation_config=gen_config,
            logits_processor=LogitsProcessorList([sampler]),
        )
        return [decode_answer(self.tokenizer, row.tolist(), self.eos_ids) for row in output[:, width:]]


def _bad_rows(i: int, answers: list[str | None]) -> list[tuple[int, int]]:
    """Rows of prompt i to re-sample: empty answers, or else each answer equal to an earlier one."""
    bad = [(i, s) for s, text in enumerate(answers) if not text]
    if not bad:
        bad = [(i, s) for s, text in enumerate(answers) if text in answers[:s]]
    return bad
