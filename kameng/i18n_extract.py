"""Pulls the texts people read out of theme.json files for the message catalog (babel.cfg
names it: `[kameng.i18n_extract.theme_json: themes/*/theme.json]`)."""

from __future__ import annotations

import json
from collections.abc import Iterator


def theme_json(fileobj, keywords, comment_tags, options) -> Iterator[tuple]:
    """Babel extraction method: a theme's name and description, and each setting's label,
    help and choice labels (the Appearance console shows them in the shop's language)."""
    text = fileobj.read().decode("utf-8")
    data = json.loads(text)
    lines = text.splitlines()

    def line_of(value: str) -> int:
        quoted = json.dumps(value, ensure_ascii=False)
        for number, line in enumerate(lines, 1):
            if quoted in line:
                return number
        return 1

    found = [data.get("name"), data.get("description")]
    for spec in (data.get("settings") or {}).values():
        if not isinstance(spec, dict):
            continue
        found += [spec.get("label"), spec.get("help")]
        for choice in spec.get("choices") or ():
            if isinstance(choice, list | tuple) and len(choice) == 2:
                found.append(choice[1])
    for value in found:
        if isinstance(value, str) and value.strip():
            yield line_of(value), None, value, []
