"""The pytest plugin (entry point pytest11 "xentcheck"): the property suite's command-line options.

Registered as a plugin rather than in conftest.py so that `pytest --pyargs xentcheck.properties
--backend SPEC` sees the options before collection. Loading it costs nothing else: no fixture and
no hook here acts outside xentcheck.properties.
"""

PROFILES = ("edges", "ci", "dev", "explore")  # how many examples: xentcheck.properties.conftest.PROFILES
PROPERTY_TIMEOUT = 3600  # `xentcheck check`'s default: seconds one property may run before its process is stopped

OPTIONS = [
    (("--backend", "--xentcheck-backend"), dict(dest="xentcheck_backend", default=None, metavar="SPEC",
      help="the backend to check: numpy, torch, jax, module:attr, path/to/file.py:attr or an entry-point name")),
    (("--profile",), dict(dest="xentcheck_profile", default="ci", choices=PROFILES,
      help="edges (the explicit edge examples only: seconds), ci (deterministic, fixed shapes, fast), dev, "
           "explore (long, with statistics)")),
    (("--ops",), dict(dest="xentcheck_ops", default=None, metavar="OP[,OP...]", help="check only these ops")),
    (("--dtypes",), dict(dest="xentcheck_dtypes", default=None, metavar="DTYPE[,DTYPE...]",
      help="check only these dtypes (float16, bfloat16, float32, float64)")),
    (("--strict-semantics",), dict(dest="xentcheck_strict", action="store_true", default=False,
      help="a semantic difference (a documented torch/JAX departure) fails the check")),
    (("--compute",), dict(dest="xentcheck_compute", default=None, metavar="native|DTYPE=FORMAT[,...]",
      help="the format each dtype is assumed computed in, overriding the backend's declaration (default: float32 "
           "for float16 and bfloat16, the dtype itself otherwise); 'native': every dtype in itself")),
    (("--property-timeout",), dict(dest="xentcheck_timeout", default=None, type=float, metavar="SECONDS",
      help="stop the process when one property runs longer (a hung backend), printing every thread's stack; "
           "under pytest-xdist the property fails and the others go on in a fresh worker")),
    (("--database",), dict(dest="xentcheck_database", default=None, metavar="PATH|redis://HOST:PORT",
      help="Hypothesis example database shared between runs and machines (explore profile)")),
]


def pytest_addoption(parser):
    group = parser.getgroup("xentcheck", "xentcheck property suite")
    for names, kwargs in OPTIONS:
        try:
            group.addoption(*names, **kwargs)
        except ValueError:  # another plugin owns the short name: keep the prefixed one
            group.addoption(f"--xentcheck-{names[0].lstrip('-')}", **kwargs)
