"""bundler: turn a registered model into a deterministic, hand-editable Docker build context."""

__version__ = "0.1.0"
