"""A shop owner's console, served at /admin on the shop's own host."""
