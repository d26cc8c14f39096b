"""The docs match the code: every command, option, configuration key, column and file they name exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from relay.cli.main import _parser
from relay.config import Config
from storage.models import Base

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"\bbinrelay((?: [a-z][a-z-]*){1,2})((?: (?:--[a-z-]+|[A-Z][A-Z.]*|\[[^\]]*\]))*)")
DOTTED = re.compile(r"`([a-z_]+)\.([a-z_]+)`")
PATHLIKE = re.compile(r"(?<![\w/.-])((?:mail|rules|relay|storage|tests|bench|systemd|docs)/[\w./*-]+)")
FILE_SUFFIXES = (".py", ".toml", ".md", ".txt", ".j2", ".json", ".service", ".eml", ".csv", ".jsonl")


def doc_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def code_in_docs() -> list[str]:
    """What the docs show as code: inline `spans` and the lines of fenced blocks (prose is left alone)."""
    found: list[str] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for index, block in enumerate(text.split("```")):
            if index % 2:  # a shell line runs binrelay first (or by its path); a layout tree is prose
                found.extend(line for line in block.splitlines()
                             if re.match(r"^\s*(?:\$ |sudo )?(?:\S*/bin/)?binrelay ", line))
            else:
                found.extend(re.findall(r"`([^`\n]+)`", block))
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_command_and_option_the_docs_name_exists() -> None:
    top = _parser()
    commands = subcommands(top)
    unknown = []
    for match in (m for code in code_in_docs() for m in COMMAND.finditer(code)):
        words = match.group(1).split()
        if words[0] not in commands:
            unknown.append(f"binrelay {words[0]}")
            continue
        parser = commands[words[0]]
        nested = subcommands(parser)
        if nested and len(words) > 1 and words[1] in nested:
            parser = nested[words[1]]
        for flag in re.findall(r"--[a-z-]+", match.group(2) + " " + " ".join(words[1:])):
            if flag not in options(parser) | options(top):
                unknown.append(f"{match.group(0).strip()}: {flag}")
    assert unknown == []


def config_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for name, field in Config.model_fields.items():
        annotation: Any = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):  # X | None, list[X]
            inner: Any = getattr(candidate, "__args__", (candidate,))[0] if hasattr(candidate, "__origin__") \
                else candidate
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys[name] = set(inner.model_fields)
    return keys


def columns() -> set[str]:
    return {f"{table.name}.{column.name}" for table in Base.metadata.tables.values() for column in table.columns}


def test_every_dotted_name_is_a_config_key_a_column_or_a_file() -> None:
    keys, known_columns = config_keys(), columns()
    unknown = []
    for section, key in DOTTED.findall(doc_text()):
        name = f"{section}.{key}"
        if section in keys and key in keys[section]:
            continue
        if name in known_columns or f".{key}" in FILE_SUFFIXES or key in ("py", "toml", "md"):
            continue
        if any((ROOT / package / section / f"{key}.py").exists() for package in ("relay", "rules", "storage", "mail")):
            continue  # a module: service.daemon
        unknown.append(name)
    assert unknown == []


def test_every_file_the_docs_name_exists() -> None:
    missing = []
    for found in PATHLIKE.findall(doc_text()):
        path = found.rstrip(".,;:)")
        if "*" in path or "<" in path:
            if not list(ROOT.glob(path.replace("<", "*").split(">")[0] + "*" if "<" in path else path)):
                missing.append(path)
            continue
        if not (ROOT / path).exists():
            missing.append(path)
    assert sorted(set(missing)) == []


@pytest.mark.parametrize("key", ["imap.cafile", "smtp.cafile", "maildir.delete_processed"])
def test_the_example_configuration_documents_the_keys_that_exist(key: str) -> None:
    section, name = key.split(".")
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    block = example.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    assert re.search(rf"^#? ?{name} =", block, re.MULTILINE), key
