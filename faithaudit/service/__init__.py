"""The HTTP service and what people see: HTML reports. Never imports torch."""
