"""EPay (易支付) gateway — being written."""
