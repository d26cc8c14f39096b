"""Texts binrelay sends, as Jinja2 templates in Dutch and English.

A template file is ``<language>/<name>.txt.j2``; its first line is
``Subject: ...`` and the body follows a blank line. Files in the operator's
``[templates] directory`` (same relative names) override the shipped ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

from relay.config import Config

SHIPPED = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class RenderedText:
    subject: str
    body: str


class TemplateError(Exception):
    pass


def make_environment(override_dir: Path | None = None) -> Environment:
    loaders: list[Any] = []
    if override_dir is not None:
        loaders.append(FileSystemLoader(str(override_dir)))
    loaders.append(PackageLoader("relay", "templates"))
    return Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Templates:
    """Renders named messages in the configured (or a member's) language."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._env = make_environment(config.templates.directory)

    def render(self, name: str, language: str | None = None, **context: Any) -> RenderedText:
        language = language if language in ("nl", "en") else self._config.network.language
        template = self._env.get_template(f"{language}/{name}.txt.j2")
        text = template.render(network=self._config.network, advice=self._config.advice, **context)
        return split_subject(text, f"{language}/{name}.txt.j2")


def split_subject(text: str, name: str) -> RenderedText:
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject:"):
        raise TemplateError(f"{name}: the first line must be 'Subject: ...'")
    return RenderedText(subject=first.removeprefix("Subject:").strip(), body=rest.lstrip("\n"))
