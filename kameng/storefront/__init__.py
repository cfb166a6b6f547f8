"""The buyer-facing shop pages, rendered through the shop's theme."""
