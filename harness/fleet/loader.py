"""Reading a matrix file: YAML in, a document checked against ``schema.SCHEMA`` out.

Every problem is a UsageError of one line that says where (file and line), which case and which
key: ``matrix.yaml:12: case 'snd-on': unknown key 'timout'``. Nothing is started by loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

MAX_BYTES = 4 * 1024 * 1024  # a matrix is a few kilobytes; this keeps a wrong file from being parsed at length

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A matrix file that matched the schema, with the YAML nodes kept for line numbers."""

    path: Path
    data: Mapping[str, Any]

    @property
    def folder(self) -> Path:
        return self.path.resolve().parent

    def line(self, where: Path_) -> int | None:
        """The 1-based line of the deepest node along ``where`` that YAML placed."""
        return _line(self.data, where)

    def fail(self, where: Path_, what: str) -> UsageError:
        return UsageError(f"{_prefix(self.path, self.line(where))}{describe(self.data, where)}{what}")


def _prefix(path: Path, line: int | None) -> str:
    return f"{path}:{line}: " if line is not None else f"{path}: "


def _line(data: Any, where: Path_) -> int | None:
    found: int | None = None
    node = data
    for step in where:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                found = (lc.key(step) if isinstance(step, str) else lc.item(step))[0] + 1
        except (KeyError, IndexError, TypeError):
            pass
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return found


def _name_of(node: Any) -> str | None:
    name = node.get("name") if isinstance(node, Mapping) else None
    return name if isinstance(name, str) and name else None


def describe(data: Any, where: Path_) -> str:
    """Who and which key ``where`` names, for a message: ``case 'x': flags[2]: ``."""
    parts: list[str] = []
    rest = list(where)
    if len(rest) >= 2 and rest[0] in ("cases", "products") and isinstance(rest[1], int):
        section, index = rest[0], rest[1]
        node = _get(data, (section, index))
        if section == "cases":
            name = _name_of(node)
            parts.append(f"case '{name}'" if name else f"cases[{index}]")
        else:
            prefix = node.get("prefix") if isinstance(node, Mapping) else None
            parts.append(f"products[{index}]" + (f" (prefix '{prefix}')" if isinstance(prefix, str) else ""))
        rest = rest[2:]
    elif rest[:1] == ["defaults"]:
        parts.append("defaults")
        rest = rest[1:]
    key = ""
    for step in rest:
        key += f"[{step}]" if isinstance(step, int) else (f".{step}" if key else str(step))
    if key:
        parts.append(key)
    return "".join(f"{p}: " for p in parts)


def _get(data: Any, where: Path_) -> Any:
    node = data
    for step in where:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _yaml_text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"matrix file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"the matrix file is a directory: {path}") from None
    except OSError as err:
        raise UsageError(f"cannot read the matrix file {path}: {err.strerror}") from err
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path}: more than {MAX_BYTES // (1024 * 1024)} MiB: not a matrix file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text (byte {err.start})") from err


def parse_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")  # round trip: the nodes keep their line numbers
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(_yaml_text(path))
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        raise UsageError(f"{_prefix(path, line)}not valid YAML: {err.problem or err.context}") from err
    except YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {err}") from err


def _plain(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def _message(error: Any) -> tuple[Path_, str]:
    """Where (path into the document) and what, for one jsonschema error."""
    where: Path_ = tuple(error.absolute_path)
    instance = error.instance
    kind = error.validator
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        known = set(error.schema.get("properties", {}))
        unknown = [k for k in instance if k not in known]
        if unknown:
            allowed = ", ".join(sorted(known))
            return (*where, str(unknown[0])), f"unknown key (known: {allowed})" if allowed else "unknown key"
    if kind == "required" and isinstance(instance, Mapping):
        missing = [k for k in error.validator_value if k not in instance]
        if missing:
            hint = " (give image: PATH or selfcheck: true)" if missing[0] == "image" else ""
            return where, f"missing key '{missing[0]}'{hint}"
    if kind == "not" and error.validator_value == {"required": ["image"]}:
        return (*where, "image"), "a selfcheck case has no image (the reference guest is in the harness image)"
    if kind == "anyOf" and where == ():
        return where, "no cases: give 'cases' or 'products'"
    if kind == "oneOf" and len(where) >= 4 and where[2] == "images":
        return where, "an image is a path or {selfcheck: true}"
    if kind == "exclusiveMinimum":
        return where, f"{_plain(instance)}: must be greater than {error.validator_value}"
    if kind == "minimum":
        return where, f"{_plain(instance)}: must be at least {error.validator_value}"
    if kind == "pattern":
        return where, f"{_plain(instance)} does not match {error.validator_value}"
    if kind == "const" and where == ("version",):
        supported = error.validator_value
        return where, f"version {_plain(instance)} is not supported (this harness reads version {supported})"
    if kind == "propertyNames":
        return where, f"{_plain(instance)}: {error.message}"
    return where, error.message


def check(data: Any, path: Path) -> Document:
    """The document, or a UsageError naming the first problem the schema finds."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    from harness.fleet.schema import SCHEMA

    if data is None:
        raise UsageError(f"{path}: empty: a matrix needs 'version' and 'cases' or 'products'")
    if not isinstance(data, Mapping):
        raise UsageError(f"{path}: a matrix is a mapping of keys (version, defaults, cases, products), "
                         f"not {type(data).__name__}")
    document = Document(path, data)
    errors = [best_match([error]) for error in Draft202012Validator(SCHEMA).iter_errors(data)]
    if errors:
        # The first problem in the file, as a person reads it; the deeper of two on one line.
        first = min(errors, key=lambda e: (document.line(tuple(e.absolute_path)) or 0, -len(e.absolute_path)))
        where, what = _message(first)
        raise document.fail(where, what)
    return document


def load(path: Path) -> Document:
    return check(parse_yaml(path), path)
