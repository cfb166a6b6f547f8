"""The platform's own landing page on the bare platform domain."""
