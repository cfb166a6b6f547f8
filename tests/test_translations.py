"""The zh_CN catalog covers every message in the code, themes and theme.json files, keeps their
placeholders, and a shop in Chinese reads Chinese; dates and money follow the page's language."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from flask_babel import force_locale

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "kameng" / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
# The keywords of `make translations` (babel's defaults already hold _, gettext, ngettext, N_).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
# %(name)s, %(num)d, a bare %s or %d; a literal %% (100%% off) and a lone % (100%) are text.
PLACEHOLDER = re.compile(r"%\((\w+)\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%([sd])")


@cache
def extracted() -> dict[str | tuple[str, ...], list[str]]:
    """msgid (a tuple for plurals) -> where it occurs, read from the sources with babel.cfg."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: dict[str | tuple[str, ...], list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS):
        if isinstance(message, tuple):
            message = tuple(m for m in message if m is not None)
            if len(message) == 1:
                message = message[0]
        if not message:
            continue
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


@cache
def catalog():
    with CATALOG.open("rb") as po:
        return read_po(po, locale="zh_CN")


def placeholders(text: str) -> list[str]:
    return sorted(f"%({name})" if name else f"%{kind}"
                  for name, kind in PLACEHOLDER.findall(text.replace("%%", "")))


def _quoted(message) -> str:
    return " | ".join(message) if isinstance(message, tuple) else message


def test_sources_have_messages_to_translate():
    messages = extracted()
    assert len(messages) > 500
    assert "Search" in messages  # a theme template
    assert "No such ticket." in messages  # a lazy service message (_l)
    assert "Brand colour" in messages  # a theme.json setting label


def test_every_message_is_translated_to_chinese():
    missing, empty, fuzzy = [], [], []
    for message, where in sorted(extracted().items(), key=lambda item: _quoted(item[0])):
        key = message[0] if isinstance(message, tuple) else message
        entry = catalog().get(key)
        line = f"{_quoted(message)!r}  ({where[0]})"
        if entry is None:
            missing.append(line)
        elif entry.fuzzy:
            fuzzy.append(line)
        elif not all(entry.string) if isinstance(entry.string, tuple) else not entry.string:
            empty.append(line)
    problems = [(f"{len(missing)} msgids are missing from {CATALOG.name}", missing),
                (f"{len(empty)} msgids have no translation", empty),
                (f"{len(fuzzy)} msgids are fuzzy", fuzzy)]
    report = "\n".join(f"{title}:\n  " + "\n  ".join(lines)
                       for title, lines in problems if lines)
    assert not report, f"run `make translations` and translate them\n{report}"


def _shown_errors() -> set[str]:
    """Names of the exceptions whose message people read: form validation errors and every
    DomainError (views show them on a form, a page or a flash) but a refused notification,
    whose reason goes back to the gateway and into the log, in English on purpose."""
    import kameng.api.views
    import kameng.delivery.adapters
    import kameng.payments.gateways.stripe_gateway  # noqa: F401
    from kameng.errors import DomainError
    from kameng.payments.gateways.base import InvalidNotification

    names, todo = {"ValidationError"}, [DomainError]
    while todo:
        kind = todo.pop()
        if not issubclass(kind, InvalidNotification):
            names.add(kind.__name__)
            todo.extend(kind.__subclasses__())
    return names


def test_messages_shown_to_people_go_through_babel(app):
    """A flash, a form error or a DomainError built from a bare string or f-string would be
    shown in English on a Chinese page (babel never sees it): each must be wrapped in _()."""
    import ast

    shown = _shown_errors()
    bare = []
    for path in sorted((ROOT / "kameng").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            callee = ast.unparse(node.func)
            first = node.args[0]
            if not (isinstance(first, ast.JoinedStr)
                    or (isinstance(first, ast.Constant) and isinstance(first.value, str))):
                continue
            if (callee.split(".")[-1] in shown | {"flash"}
                    or callee.endswith(("errors.append", "form_errors.append"))):
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:90]}")
    assert not bare, "shown to people untranslated:\n" + "\n".join(bare)


def test_translations_keep_the_placeholders():
    wrong = []
    for entry in catalog():
        if not entry.id or not entry.string:
            continue
        if isinstance(entry.id, tuple):  # Chinese has one plural form: it says the plural
            expected = placeholders(entry.id[1])
            strings = [s for s in entry.string if s]
        else:
            expected, strings = placeholders(entry.id), [entry.string]
        for string in strings:
            if placeholders(string) != expected:
                wrong.append(f"{_quoted(entry.id)!r} -> {string!r}: expected {expected}, "
                              f"found {placeholders(string)}")
    assert not wrong, "placeholders differ:\n  " + "\n  ".join(wrong)


def test_a_chinese_shop_reads_chinese(create_tenant, client_for):
    shop = create_tenant(slug="zhong", locale="zh_CN")
    page = client_for(shop).get("/").get_data(as_text=True)
    assert '<html lang="zh-CN"' in page
    assert ">搜索</button>" in page
    assert "Search products" not in page


def test_english_visitors_of_a_chinese_shop_read_english(create_tenant, client_for):
    shop = create_tenant(slug="zhong-en", locale="zh_CN")
    client = client_for(shop)
    client.get("/lang/en")
    page = client.get("/").get_data(as_text=True)
    assert ">Search</button>" in page


def test_dates_follow_the_language_and_money_keeps_its_symbol(app):
    from kameng.i18n import date_text, datetime_text
    from kameng.money import format_money

    moment = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
    with app.test_request_context():
        with force_locale("zh_CN"):
            assert date_text(date(2026, 11, 26)) == "2026年11月26日"
            assert datetime_text(moment) == "2026年11月26日 15:30"
            assert format_money(1234, "CNY") == "¥12.34"
        with force_locale("en"):
            assert date_text(date(2026, 11, 26)) == "Nov 26, 2026"
            assert datetime_text(moment).replace("\u202f", " ") == "Nov 26, 2026, 3:30 PM"
            assert format_money(-1234, "CNY") == "-¥12.34"
        assert date_text(None) == datetime_text(None) == ""


def _ledger_kinds() -> set[str]:
    """Every kind of ledger transaction the code posts: the literal `kind` of each
    ledger.post / transfer (second argument) and capture_hold (third)."""
    import ast

    kinds = set()
    for path in (ROOT / "kameng").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            position = {"post": 1, "transfer": 1, "capture_hold": 2}.get(node.func.attr)
            if position is None or ast.unparse(node.func.value) != "ledger":
                continue
            if len(node.args) > position and isinstance(node.args[position], ast.Constant):
                kinds.add(node.args[position].value)
    return kinds


def test_statuses_and_wallet_movements_are_named_in_the_page_language(app):
    """Billing statuses and every kind of wallet movement show as words, not as raw keys."""
    from kameng.billing.service import billing_status_label
    from kameng.orders.labels import movement_label

    subscription = ("trialing", "active", "past_due", "suspended", "cancelled")
    invoice = ("open", "paid", "void")
    movements = _ledger_kinds()
    assert {"wallet_payment", "supply_cost", "platform_funding"} <= movements
    with app.test_request_context(), force_locale("zh_CN"):
        for status in subscription + invoice:
            assert re.search(r"[\u4e00-\u9fff]", billing_status_label(status)), status
        for kind in movements:
            assert re.search(r"[\u4e00-\u9fff]", movement_label(kind)), kind
    with app.test_request_context(), force_locale("en"):
        assert billing_status_label("past_due") == "Past due"
        assert movement_label("supply_cost") == "Supply cost"
