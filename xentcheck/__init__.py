"""xentcheck: proves softmax and cross-entropy implementations right, value and gradient."""
__version__ = "0.1.0"
