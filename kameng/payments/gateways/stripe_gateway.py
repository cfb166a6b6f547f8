"""Stripe gateway — being written."""
