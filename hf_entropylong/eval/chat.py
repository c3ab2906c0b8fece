"""Chat prompts without the tokenizer's default system prompt, as RULER's model templates have none.

Many chat templates add a system turn when the conversation has none: SmolLM2's ("You are a helpful AI
assistant named SmolLM, ...") and Llama-3.1's (knowledge cutoff and date). RULER's own templates
(`scripts/data/template.py`, e.g. `meta-llama3`) are a user turn and the assistant header only, so a
RULER score through such a tokenizer's template would be measured with text the official prompts lack.

`chat_prompt` renders the conversation after an explicit system message holding a sentinel, then cuts
that system turn out, whatever the template writes around it:

- its end is the sentinel plus the text the template writes after a finished message (found by
  rendering the final assistant message closed: `<|im_end|>\\n`, `<|eot_id|>`, ...);
- its start is the first occurrence of the text that opens the user turn before the role name
  (`<|im_start|>`, `<|start_header_id|>`); what comes before it (e.g. Llama's `<|begin_of_text|>`) stays.

A template that refuses a system role (it has no system turn to add) is rendered as it is; one whose
system turn cannot be delimited this way is rendered with its default and a warning.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

_SENTINEL = "hf-entropylong-system-sentinel"
_TURNS: dict[str, tuple[int, int] | None] = {}  # chat template text → its system turn (found once)


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, closed: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=not (add_generation_prompt or closed),
    )


def _system_turn(tokenizer) -> tuple[int, int] | None:
    """Where the system turn of a rendered `[system sentinel, ...]` conversation starts, and its closing text."""
    import jinja2

    system = {"role": "system", "content": _SENTINEL}
    probe = [system, {"role": "user", "content": "hf-user"}, {"role": "assistant", "content": "hf-answer"}]
    try:
        open_text = _render(tokenizer, probe, False)
        closed_text = _render(tokenizer, probe, False, closed=True)
    except jinja2.exceptions.TemplateError:
        return None
    close = closed_text[closed_text.rindex("hf-answer") + len("hf-answer") :]
    end = open_text.index(_SENTINEL) + len(_SENTINEL)
    user_turn = open_text[end + len(close) :]
    if not close or not open_text[end:].startswith(close) or "user" not in user_turn:
        raise ValueError("system turn not delimited")
    lead = user_turn[: user_turn.index("user")]
    start = open_text.find(lead) if lead else 0
    return start, len(close)


def chat_prompt(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """`messages` through the tokenizer's chat template without any system turn the template would add.

    Args:
        tokenizer: a tokenizer with a chat template.
        messages: user/assistant turns (no system message).
        add_generation_prompt: end with the assistant header; otherwise the final (assistant) message is
            continued, as lm-eval renders a `gen_prefix`.
    """
    template = str(tokenizer.chat_template)
    if template not in _TURNS:
        try:
            _TURNS[template] = _system_turn(tokenizer)
        except ValueError:
            logger.warning("Could not remove the default system prompt of this chat template; keeping it.")
            _TURNS[template] = None
    turn = _TURNS[template]
    if turn is None:
        return _render(tokenizer, messages, add_generation_prompt)
    start, close_length = turn
    text = _render(tokenizer, [{"role": "system", "content": _SENTINEL}, *messages], add_generation_prompt)
    return text[:start] + text[text.index(_SENTINEL) + len(_SENTINEL) + close_length :]


def use_chat_prompt(lm) -> None:
    """Make lm-eval's `HFLM` render chat prompts with `chat_prompt` (no default system prompt)."""
    tokenizer = lm.tokenizer
    lm.apply_chat_template = lambda chat_history, add_generation_prompt=True: chat_prompt(
        tokenizer, chat_history, add_generation_prompt
    )
