"""xentcheck: proves softmax and cross-entropy implementations right, value and gradient."""
from pathlib import Path as _Path

__version__ = "0.1.0"

# pyproject.toml installs reference/ and backends/ as xentcheck.reference and xentcheck.backends. When a source
# checkout itself is on sys.path (`python -m xentcheck.cli` from its root), those folders sit beside this
# package instead of inside it: look for the subpackages there too, so the checkout imports the same names.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "reference").is_dir() and (_checkout / "reference" / "__init__.py").is_file():
    __path__.append(str(_checkout))
