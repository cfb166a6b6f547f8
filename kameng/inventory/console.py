"""The shop console's code inventory pages: stock, import, void, delete, audited export."""

from __future__ import annotations

from ..merchant.console import console_blueprint

bp = console_blueprint("shop_codes", __name__)
