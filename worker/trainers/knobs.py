"""The knobs every TRL-based policy trainer shares: the KL guardrail and the report's samples
(see worker.trainers.guard and worker.trainers.report). DPO and GRPO/RLOO configs inherit them."""

from __future__ import annotations

from dataclasses import dataclass

from prefloop.knobs import Knobs, knob


@dataclass(frozen=True)
class GuardKnobs(Knobs):
    kl_stop: float | None = knob(
        20.0,
        "Stop when the measured KL to the starting policy (nats per response) "
        "passes this bound; the weights from the last check within it are kept. "
        "None: never.",
    )
    kl_check_steps: int = knob(10, "Optimizer steps between two KL measurements.")
    kl_prompts: int = knob(16, "Prompts sampled (one response each) per KL measurement.")
    sample_prompts: int = knob(4, "Prompts whose responses before and after training go into samples.json.")
