"""watcherd: watch Together AI fine-tuning jobs, keep their history, fire hooks."""

__version__ = "0.1.0"
