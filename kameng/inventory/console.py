"""The shop console's code inventory pages: stock, import, void, delete, audited export."""

from __future__ import annotations

from ..merchant.console import console_blueprint
from ..superadmin.console import platform_blueprint

bp = console_blueprint("shop_codes", __name__)


# The same pages for the platform's supply codes, on the admin host under /supply.
supply_bp = platform_blueprint("supply_codes", __name__)
