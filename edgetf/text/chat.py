"""Chat input: role/content messages rendered with the tokenizer's chat template, as transformers'
``apply_chat_template`` does (jinja2 sandbox, ``trim_blocks``/``lstrip_blocks``, ``raise_exception``,
``strftime_now``, a non-escaping ``tojson``, the special tokens as template variables).

The template comes from ``chat_template.jinja`` (how transformers >= 4.50 saves it) or else from
``tokenizer_config.json``'s ``chat_template`` (a str, or a list of named templates of which ``default``
is used). jinja2 is imported only when a chat is rendered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import BundleError, InvalidInputError

TEMPLATE_FILE = "chat_template.jinja"
# transformers' trick to cut a rendered chat right after the final message's text
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


@dataclass(frozen=True)
class Chat:
    """One conversation: a list of ``{"role": ..., "content": ...}`` dicts (checked, not copied)."""

    messages: tuple[Mapping[str, Any], ...]

    @classmethod
    def of(cls, messages: Any) -> Chat:
        if not isinstance(messages, (list, tuple)) or not messages:
            raise InvalidInputError(
                f"a chat must be a non-empty list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
            )
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
                raise InvalidInputError(
                    f"chat message {i} must be a dict with 'role' and 'content' keys, got {str(message)[:80]!r}"
                )
            if not isinstance(message["role"], str):
                raise InvalidInputError(f"chat message {i}: 'role' must be a str, got {message['role']!r}")
        return cls(tuple(messages))

    @property
    def ends_with_assistant(self) -> bool:
        """transformers continues the final message (prefill) by default when the assistant spoke last."""
        return self.messages[-1]["role"] == "assistant"


def is_chat(value: Any) -> bool:
    """A chat (list of dicts) rather than a prompt or a list of prompts."""
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], Mapping)


def is_chat_batch(value: Any) -> bool:
    """A list of chats (each a list of dicts)."""
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (list, tuple))


def template_source(tokenizer_config: Mapping[str, Any], template_file: str | None = None) -> str | None:
    """The chat template text: the ``chat_template.jinja`` file's, else tokenizer_config's; None if neither."""
    if template_file is not None:
        return template_file
    value = tokenizer_config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # named templates: [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, Mapping)}
        if "default" in named:
            return named["default"]
        names = sorted(map(str, named))
        raise BundleError(f"the tokenizer has several chat templates {names} and none named 'default'")
    raise BundleError(f"tokenizer_config.json chat_template must be a str or a list, got {type(value).__name__}")


def bundle_template(bundle: Any, tokenizer_config: Mapping[str, Any]) -> str | None:
    """The chat template of a bundle folder (``chat_template.jinja`` or tokenizer_config.json), or None."""
    file = bundle.file(TEMPLATE_FILE).read_text(encoding="utf-8") if bundle.has(TEMPLATE_FILE) else None
    return template_source(tokenizer_config, file)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _generation_extension() -> Any:
    """The ``{% generation %}...{% endgeneration %}`` tag transformers defines; here it renders its body."""
    import jinja2.ext
    import jinja2.nodes

    class GenerationTag(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    return GenerationTag


class ChatTemplate:
    """A compiled chat template and the special tokens it may use (``bos_token``, ``eos_token``, ...)."""

    def __init__(self, source: str, special_tokens: Mapping[str, Any] | None = None):
        try:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as exc:  # pragma: no cover - jinja2 is a base dependency
            raise BundleError("chat input needs jinja2 (pip install jinja2)") from exc
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[_generation_extension(), jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self.template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise BundleError(f"the tokenizer's chat template does not parse: {exc}") from exc
        self.special_tokens = dict(special_tokens or {})

    def render(self, chat: Chat, *, add_generation_prompt: bool = True, continue_final_message: bool = False) -> str:
        """The prompt text for ``chat`` (transformers' ``apply_chat_template(..., tokenize=False)``)."""
        import jinja2

        if continue_final_message and add_generation_prompt:
            raise InvalidInputError("continue_final_message and add_generation_prompt cannot both be set")
        messages = [dict(m) for m in chat.messages]
        final = None
        if continue_final_message:
            content = messages[-1]["content"]
            if not isinstance(content, str):
                raise InvalidInputError("continue_final_message needs the final message's content to be a str")
            final = content
            messages[-1]["content"] = content + _CONTINUE_TAG
        try:
            text = self.template.render(
                messages=messages,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except jinja2.TemplateError as exc:  # raise_exception(...) in the template, or a template bug
            raise InvalidInputError(f"the chat template rejected the messages: {exc}") from exc
        if final is None:
            return text
        tag = _CONTINUE_TAG.strip()
        if final.strip() not in text or tag not in text:
            raise InvalidInputError(
                "continue_final_message: the final message does not appear in the rendered chat (the template "
                "drops part of it)"
            )
        cut = text.rindex(tag)
        return text[:cut] if text[cut : cut + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:cut].rstrip()


def special_tokens_map(config: Mapping[str, Any], tokens: Mapping[str, str]) -> dict[str, Any]:
    """transformers' ``special_tokens_map`` as template variables: the named tokens (str) and the
    ``additional_special_tokens`` list where the tokenizer has one."""
    out: dict[str, Any] = dict(tokens)
    extra = config.get("additional_special_tokens")
    if isinstance(extra, Sequence) and not isinstance(extra, str) and extra:
        out["additional_special_tokens"] = [t["content"] if isinstance(t, Mapping) else str(t) for t in extra]
    return out
