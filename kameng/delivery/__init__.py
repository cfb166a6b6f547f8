"""Delivery of paid orders: one strategy per delivery kind (card, text, manual, topup)."""
