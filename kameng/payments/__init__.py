"""Payments: gateways (sandbox, balance, Stripe, EPay), notifications, credentials."""
