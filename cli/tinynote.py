"""What `prefloop up` tells annotators when it runs on the tiny offline model: a line at the top of
the labeling interface itself (seen on every task, however it was opened: "Label All Tasks", a row of
the Data Manager, a link), the project's instructions (shown before labeling) and its description.
A later start on a real model takes all three away again, so a note never outlives its reason."""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import quoteattr

TINY_NOTE = (
    "This demo runs on a tiny GPT-2 built offline with random weights (no model hub here): its answers "
    "are gibberish, full of replacement characters and boxes. That is expected. Pick either answer: the "
    "loop (reward model, then PPO) works the same, and with a real model (BASE_MODEL) the answers read well."
)
"""Shown to annotators (the banner, the project's instructions and description), on the status page
(written next to the model as `prefloop-note.txt`) and in `prefloop up`'s output."""

BANNER_CLASS = "prefloop-tiny-note"
_BANNER = re.compile(rf'<View className="{BANNER_CLASS}"[^>]*>.*?</View>', re.DOTALL)  # holds one self-closing Header
_BOX = "margin: 0 16px 12px; padding: 8px 12px; background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px"
_TEXT = "margin: 0; font-size: 13px; font-weight: 400; line-height: 1.4"
_INSTRUCTION = "<p><b>Tiny offline model.</b> "
_DESCRIPTION = "Tiny offline model: "


def with_banner(xml: str, note: str = TINY_NOTE) -> str:
    """The label config with the note as the first thing inside its root <View> (once, however often
    it is applied); the tags prefloop reads are untouched."""
    banner = (
        f'<View className="{BANNER_CLASS}" style="{_BOX}">'
        f'<Header value={quoteattr("Tiny offline model: " + note)} size="6" style="{_TEXT}"/></View>'
    )
    bare = without_banner(xml)
    opening = re.search(r"<View\b[^>]*>", bare)
    if opening is None:
        return bare
    return bare[: opening.end()] + "\n  " + banner + bare[opening.end() :]


def without_banner(xml: str) -> str:
    """The label config as it was before `with_banner`."""
    return re.sub(r"\n? *" + _BANNER.pattern, "", xml, flags=re.DOTALL)


def announce(client: Any, project_id: int, tiny: bool) -> None:
    """Put the note into the project (tiny) or take prefloop's note out of it (a real model now);
    the user's own instructions and description are left alone."""
    project = client.get_project(project_id)
    xml = project.get("label_config") or ""
    wanted = with_banner(xml) if tiny else without_banner(xml)
    fields: dict[str, Any] = {}
    if wanted != xml:
        fields["label_config"] = wanted
    if tiny:
        fields.update(
            expert_instruction=f"{_INSTRUCTION}{TINY_NOTE}</p>",
            show_instruction=True,
            description=f"{_DESCRIPTION}{TINY_NOTE}",
        )
    else:
        if (project.get("expert_instruction") or "").startswith(_INSTRUCTION):
            fields.update(expert_instruction="", show_instruction=False)
        if (project.get("description") or "").startswith(_DESCRIPTION):
            fields["description"] = ""
    if fields:
        client.update_project(project_id, **fields)
