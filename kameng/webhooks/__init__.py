"""Shop webhooks: signed HTTP notifications of order and stock events to a shop's own URLs."""
