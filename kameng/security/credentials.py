"""Credentials a shop keeps for a payment gateway or a supplier: their fields, and what a form
may show of stored values (secrets masked: the forms are write-only for them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool = True  # shown masked and write-only in forms
    required: bool = True


def masked(values: Mapping[str, object], fields: Iterable[CredentialField]) -> dict[str, str]:
    """What a form may show of stored credentials: secrets as ••••last4, others in full."""
    shown = {}
    for spec in fields:
        value = str(values.get(spec.name) or "")
        if not value:
            shown[spec.name] = ""
        elif spec.secret:
            shown[spec.name] = "••••" + value[-4:] if len(value) > 8 else "••••"
        else:
            shown[spec.name] = value
    return shown
