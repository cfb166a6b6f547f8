"""WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

import sys

from kameng import create_app
from kameng.config import ConfigError

try:
    app = create_app()
except ConfigError as error:  # one clear line instead of a traceback
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(2)
