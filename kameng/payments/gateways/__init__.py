"""Payment gateways: one module each; every gateway registers itself in payments.registry."""
