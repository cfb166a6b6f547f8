"""A shop's look: its theme and theme settings, logo and banner, notice, footer and contacts."""
