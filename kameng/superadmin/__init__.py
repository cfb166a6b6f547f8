"""The platform owner's console on the admin host (the design card's `platform/`)."""
