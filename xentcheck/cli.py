"""The `xentcheck` command line. Every error is one line on stderr and exit status 2; never a traceback."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys


def _cmd_backends(args) -> int:
    from .backends import available_backends

    status = available_backends()
    width = max(map(len, status))
    for name, reason in status.items():
        print(f"{name:<{width}} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def _cmd_departures(args) -> int:
    from .semantics import DEPARTURES

    for d in DEPARTURES:
        print(f"{d.key}\n  {d.op} {d.kind}; {', '.join(d.frameworks) or 'no built-in framework'}; answers {d.answer}\n"
              f"  {d.description}")
    return 0


def _cmd_explain(args) -> int:
    from .explain import explanation, render

    if (args.logits is None) != (args.target is None):
        raise UsageError("--logits, --target: give both (your logits and the target class index) or neither")
    logits = None if args.logits is None else _parse_floats(args.logits, "--logits")
    try:
        sections = explanation(logits, args.target)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(render(sections))
    return 0


def _load_array(spec: str, what: str):
    """An array from FILE.npy, FILE.npz (its first array), FILE.npz:NAME (the array NAME) or FILE.csv
    (comma-separated numbers, one example per line, no header; lines starting with # are skipped)."""
    import numpy as np

    path, name = spec, None
    if not os.path.exists(spec) and ".npz:" in spec:
        path, name = spec.rsplit(":", 1)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".npz", ".csv"):
        raise UsageError(f"{what} {spec}: unsupported format {ext or '(no extension)'}; use .npy, .npz or .csv")
    if not os.path.isfile(path):
        raise UsageError(f"{what} {spec}: no such file")
    try:
        if ext == ".csv":
            return np.loadtxt(path, delimiter=",", ndmin=2)
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if not names:
                raise UsageError(f"{what} {spec}: the .npz file holds no arrays")
            if name is not None and name not in names:
                raise UsageError(f"{what} {spec}: no array {name!r} in the .npz file; it holds {', '.join(names)}")
            return archive[name if name is not None else names[0]]
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - any unreadable file is a one-line usage error
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"{what} {spec}: could not read it as {ext} ({message})") from None


def _output_file(option: str, path: str | None, example: str = "report.json") -> None:
    """Fail before any work where `path` cannot be written: its folder must exist and it must name a file."""
    if path is None:
        return
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a folder; name a file in it (e.g. {os.path.join(path, example)})")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UsageError(f"{option} {path}: its folder does not exist")


def _output_folder(option: str, path: str) -> None:
    """Make the report folder now, so that a bad --out fails before any work."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a file; name a folder for the report")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot make that folder ({error.strerror or error})") from None


def _cmd_new_backend(args) -> int:
    import re
    from importlib import resources

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", args.name):
        raise UsageError(f"NAME: letters, digits, - and _, starting with a letter; got {args.name!r}")
    out = args.out or f"{args.name.replace('-', '_')}.py"
    _output_file("--out", out, f"{args.name}.py")
    if os.path.exists(out):
        raise UsageError(f"--out {out}: already exists; name another file")
    template = resources.files("xentcheck.backends").joinpath("template.py").read_text()
    class_name = "".join(part.capitalize() for part in re.split(r"[-_]", args.name)) + "Backend"
    with open(out, "w") as f:
        f.write(template.replace("NAME_CLASS", class_name).replace("NAME", args.name)
                .replace("THIS_FILE.py", os.path.basename(out)))
    print(f"wrote {out}: fill in the marked lines, then run: xentcheck check --backend {out}")
    return 0


def _cmd_calibrate(args) -> int:
    import numpy as np

    from .reference import calibration as cal
    from .reference import softmax

    if args.bins < 1:
        raise UsageError(f"--bins: must be a positive integer; got {args.bins}")
    _output_file("--out", args.out, "reliability.png")
    logits, labels = _load_array(args.logits, "LOGITS"), _load_array(args.labels, "LABELS")
    if labels.ndim == 2 and 1 in labels.shape:  # a .csv column or row of labels
        labels = labels.reshape(-1)
    try:
        logits, labels = cal.check_logits_labels(logits, labels)
    except ValueError as error:
        raise UsageError(str(error)) from None
    tau = cal.fit_temperature(logits, labels)
    rows = []
    for name, t in (("before", 1.0), ("after", tau)):
        diagram = cal.reliability_diagram(softmax(logits, temperature=t), labels, args.bins)
        rows.append((name, t, cal.nll(logits, labels, t), diagram))
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    print(f"{len(labels)} examples, {logits.shape[1]} classes, accuracy {accuracy:.4f} (the same at every tau); "
          f"ECE over {args.bins} equal-width bins")
    print(f"{'':<8}{'tau':>12}{'NLL':>12}{'ECE':>12}")
    for name, t, loss, diagram in rows:
        print(f"{name:<8}{t:>12.6g}{loss:>12.6f}{diagram.ece:>12.6f}")
    if tau in (cal.TAU_MIN, cal.TAU_MAX):
        why = "every label is an argmax: the NLL falls as tau -> 0" if tau == cal.TAU_MIN else \
              "the NLL falls as tau grows: the logits carry no information about the labels"
        print(f"note: tau is at the search bound {tau:g} ({why})")
    try:
        cal.plot_reliability({f"{name} (tau = {t:.4g})": d for name, t, _, d in rows}, args.out)
    except ImportError as error:
        raise UsageError(f"--out: {error}") from None
    except OSError as error:
        raise UsageError(f"--out {args.out}: could not write it ({error.strerror or error})") from None
    print(f"reliability diagram: {args.out}")
    return 0


def _cmd_bench(args) -> int:
    import math

    from .bench import DTYPES, parse_sizes, render_markdown, run_bench, write_all
    from .check import progress_bar

    from .records import OPS

    ops, dtypes = _choices("--ops", args.ops, tuple(OPS)), _choices("--dtypes", args.dtypes, DTYPES)
    budget = None
    if args.budget is not None:
        try:
            budget = float(args.budget)
        except ValueError:
            budget = math.nan
        if not 0 < budget < math.inf:
            raise UsageError(f"--budget: must be a finite number of seconds > 0; got {args.budget!r}")
    try:
        sizes = None if args.sizes is None else parse_sizes(args.sizes)
    except ValueError as error:
        raise UsageError(f"--sizes: {error}") from None
    _output_folder("--out", args.out)
    options = ["--quick"] * args.quick + [f"--{k} {v}" for k, v in (
        ("sizes", args.sizes), ("dtypes", args.dtypes), ("ops", args.ops), ("budget", args.budget)) if v is not None]
    options += [f"--backend {spec}" for spec in args.backend or []]
    command = " ".join(["xentcheck bench", *options])
    results = run_bench(sizes, dtypes, budget, args.quick, None if args.no_progress else progress_bar(), ops=ops,
                        specs=args.backend)
    written = write_all(results, args.out, command)
    print(render_markdown(results, command))
    print(f"Wrote: {', '.join(written)}")
    return 0


def _cmd_check(args) -> int:
    from .check import CheckUsageError, progress_bar, render, run_check, write_json
    from .properties.plugin import PROPERTY_TIMEOUT

    if args.timeout is not None and not 0 <= args.timeout <= 1e6:
        raise UsageError(f"--timeout: must be from 0 to 1e6 seconds (0: no limit); got {args.timeout}")

    _output_file("--json", args.json)
    _output_file("--junitxml", args.junitxml, "report.xml")
    try:
        result = run_check(args.backend, profile=args.profile, ops=_names(args.ops), dtypes=_names(args.dtypes),
                           keyword=args.k, seed=args.seed, strict=args.strict, junitxml=args.junitxml,
                           workers=args.workers, database=args.database, fail_fast=args.exitfirst,
                           progress=None if args.no_progress else progress_bar(), compute=args.compute,
                           arrays=os.path.splitext(args.json)[0] + "-arrays" if args.json else None,
                           timeout=PROPERTY_TIMEOUT if args.timeout is None else args.timeout or None)
    except CheckUsageError as error:
        raise UsageError(str(error)) from None
    print(render(result, verbose=args.verbose))
    if args.json:
        write_json(result, args.json)
        print(f"JSON report: {args.json}")
    return result.exit_code


def _cmd_compare(args) -> int:
    from .backends import COMPARED, GPU_BUILTINS, available_backends
    from .backends.contract import parse_compute
    from .check import progress_bar
    from .compare import DEFAULT_TIMEOUT, run_compare
    from .records import OPS
    from .reference import DTYPE_NAMES
    from .report import terminal_summary, write_all

    ops, dtypes = _choices("--ops", args.ops, tuple(OPS)), _choices("--dtypes", args.dtypes, DTYPE_NAMES)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout: must be > 0 seconds; got {args.timeout}")
    specs = _names(args.backends)
    if specs:
        _loadable(specs)
    else:
        status = available_backends(load=False)  # each backend's worker loads it, and reports a failure
        specs = [name for name in COMPARED if status.get(name) is None]
        skipped = [f"{name} ({status[name]})" for name in COMPARED if name not in specs and name not in GPU_BUILTINS]
        if skipped:
            print("not available here: " + "; ".join(skipped))
    try:
        compute = parse_compute(args.compute)
    except ValueError as error:
        raise UsageError(str(error)) from None
    _output_folder("--out", args.out)
    with _dask_client(args.scheduler) as client:
        results = run_compare(specs, ops=ops, dtypes=dtypes, quick=args.quick,
                              timeout=args.timeout or DEFAULT_TIMEOUT,
                              progress=None if args.no_progress else progress_bar(), compute=compute, client=client)
    print(terminal_summary(results))
    written = write_all(results, args.out)
    t = results["timing"]
    print(f"\n{t['total_s']} s in all, the oracle {t['oracle_wall_s']} s of it "
          f"({t['oracle_cached']}/{t['oracle_tasks']} from its cache). Wrote: {', '.join(written)}")
    return 0


@contextlib.contextmanager
def _dask_client(address: str | None):
    """A dask.distributed Client for --scheduler (None without one); a one-line UsageError when the address
    is malformed, the scheduler cannot be reached or dask.distributed is not installed."""
    if address is None:
        yield None
        return
    local = re.fullmatch(r"local:(\d+)", address.strip())
    if not local and not re.fullmatch(r"(tcp|tls|inproc|ucx)://\S+", address.strip()):
        raise UsageError(f"--scheduler: must be tcp://HOST:PORT or local:N (N worker processes); got {address!r}")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--scheduler: needs dask.distributed (pip install 'xentcheck[dask]')") from None
    with contextlib.ExitStack() as stack:
        if local:
            if int(local.group(1)) < 1:
                raise UsageError(f"--scheduler: local:N needs N >= 1 worker processes; got {address!r}")
            target = stack.enter_context(LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1,
                                                      processes=True, host="127.0.0.1", dashboard_address=":0"))
        else:
            target = address.strip()
        try:
            client = stack.enter_context(Client(target, timeout=15))
        except (OSError, TimeoutError) as error:
            raise UsageError(f"--scheduler: cannot reach {address}: {str(error).splitlines()[0][:200]}") from None
        yield client


def _loadable(specs) -> None:
    """Every backend named on the command line loads here (a built-in by the checks that import nothing:
    compare's workers load them), else a one-line error naming it and why."""
    from .backends import BUILTINS, BackendLoadError, available_backends, load_backend

    status = available_backends(load=False)
    for spec in specs:
        try:
            if spec in BUILTINS:
                if status[spec] is not None:
                    raise BackendLoadError(status[spec])
            else:
                load_backend(spec)
        except BackendLoadError as error:
            why = str(error)
            for prefix in (f"--backend {spec}: ", "--backend: ", f"{spec}: "):
                why = why.removeprefix(prefix)
            raise UsageError(f"--backends: cannot load {spec}: {why}") from None


def _names(text):
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _choices(option, text, allowed):
    """The comma-separated names in `text` (None where not given), each one of `allowed` (else UsageError)."""
    from .reference.validation import check_choices

    try:
        return check_choices(option, _names(text), allowed)
    except ValueError as error:
        raise UsageError(str(error)) from None


class UsageError(Exception):
    """A bad option or argument: reported in one line, exit status 2."""


def _parse_floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"{option}: expected numbers separated by commas or spaces; got {text!r}") from None


def _selection(p, ops: str, dtypes: str) -> None:
    """The options check, compare and bench share: --ops, --dtypes (their defaults named), --no-progress."""
    p.add_argument("--ops", help=f"comma-separated ops of xentcheck.records (default: {ops})")
    p.add_argument("--dtypes", help=f"comma-separated dtypes (default: {dtypes})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def _compute(p, whose: str) -> None:
    p.add_argument("--compute", metavar="native|DTYPE=FORMAT[,...]",
                   help=f"the format each dtype is assumed computed in, overriding {whose} declaration (default "
                        "float32 for float16 and bfloat16, the dtype itself otherwise); e.g. bfloat16=bfloat16 for "
                        "a kernel that accumulates in bfloat16, or native")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time the backends check verifies: numpy, torch, torch-compile, JAX",
                       description="Time each op's value and vjp (default softmax and cross_entropy) on the backends "
                                   "`check` verifies (default the NumPy reference, torch, torch-compile and JAX on "
                                   "unpadded shapes, and torch CUDA and JAX GPU where a GPU is present), in float32, "
                                   "float64 and bfloat16, against this machine's measured copy bandwidth and exp "
                                   "throughput; peak memory and compile costs too. Writes results.json, RESULTS.md "
                                   "and bench.png to --out.")
    p.add_argument("--quick", action="store_true",
                   help="sizes up to 512x8192, float32, 0.1 s per measurement (a minute or two)")
    p.add_argument("--sizes", help="comma-separated ROWSxCOLS (default 8x20,64x1024,512x8192,2048x32768, and "
                                   "8192x131072 in float32 only); a size that does not fit in memory is skipped")
    _selection(p, "softmax,cross_entropy", "float32,float64,bfloat16")
    p.add_argument("--backend", action="append", metavar="SPEC",
                   help="a backend to time, as for check (repeat it for several; default the built-ins above)")
    p.add_argument("--out", default="xentcheck-bench", metavar="DIR", help="report folder (default ./xentcheck-bench)")
    p.add_argument("--budget", metavar="SECONDS", help="time per measurement (default 0.5; --quick 0.1)")
    p.set_defaults(run=_cmd_bench)


def _add_check(sub) -> None:
    from .properties.plugin import PROPERTY_TIMEOUT

    p = sub.add_parser("check", help="run the property suite on a backend (a CI gate)",
                       description="Run the property suite on one backend. Exit 0: every property holds; 1: one "
                                   "is falsified (minimal counterexample and reproducer printed); 2: bad options "
                                   "or the backend cannot be loaded.")
    p.add_argument("--backend", required=True, metavar="SPEC",
                   help="a built-in (`xentcheck backends` lists them), package.module:attr, path/to/file.py[:attr] "
                        "or an entry-point name")
    p.add_argument("--profile", default="ci", help="edges (the explicit edge examples only: seconds, a first "
                   "look), ci (deterministic, fixed shapes; default), dev, explore (long)")
    _selection(p, "all", "float16,bfloat16,float32,float64")
    p.add_argument("-k", metavar="EXPR", help="select properties by name, as pytest -k")
    p.add_argument("--seed", type=int, help="Hypothesis seed (makes the ci profile draw other examples)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop a property that runs longer (a hung backend) and show where it hung; under --workers it "
                        f"fails and the rest go on (default {PROPERTY_TIMEOUT}; 0: no limit)")
    p.add_argument("--strict", action="store_true", help="a semantic difference fails the check")
    p.add_argument("--json", metavar="PATH", help="write a machine-readable report")
    p.add_argument("--junitxml", metavar="PATH", help="write a JUnit XML report")
    p.add_argument("--workers", type=int, metavar="N", help="run the properties in N processes (pytest-xdist)")
    p.add_argument("--database", metavar="PATH|redis://HOST:PORT",
                   help="Hypothesis example database shared by runs and machines")
    _compute(p, "the backend's")
    p.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first falsified property")
    p.add_argument("-v", "--verbose", action="store_true", help="also print pytest's own output")
    p.set_defaults(run=_cmd_check)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="every backend against the exact oracle, in ULPs; edge semantics side by side",
                       description="Measure every backend against the exact oracle (ULP error per op, kind and "
                                   "dtype, stratified by what drives it) and tabulate what each does at the edges. "
                                   "Writes results.json, report.md, report.html and PNG plots to --out.")
    p.add_argument("--backends", help="comma-separated specs (default: numpy, torch, jax and the GPU ones, "
                                      "those available here)")
    _selection(p, "all", "float16,bfloat16,float32,float64")
    p.add_argument("--out", default="xentcheck-report", help="report directory (default ./xentcheck-report)")
    p.add_argument("--quick", action="store_true", help="a smaller suite: rows up to 1024 entries (about 20 s)")
    p.add_argument("--timeout", type=float, help="per-call timeout in seconds for a backend (default 120)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the oracle and the backends' calls on a Dask cluster: tcp://HOST:PORT (a running "
                        "dask scheduler) or local:N (N worker processes started here, on loopback); default: a "
                        "local process pool (needs xentcheck[dask])")
    _compute(p, "every backend's")
    p.set_defaults(run=_cmd_compare)


def _add_new_backend(sub) -> None:
    p = sub.add_parser("new-backend", help="write a commented adapter template to fill in",
                       description="Write NAME.py, a backend adapter on xentcheck.backends.Backend that runs as "
                                   "written (NumPy) with the lines to replace by your library's calls marked, "
                                   "bfloat16 handling included; then: xentcheck check --backend NAME.py")
    p.add_argument("name", metavar="NAME", help="the backend's name")
    p.add_argument("--out", metavar="PATH", help="the file to write (default ./NAME.py; never overwritten)")
    p.set_defaults(run=_cmd_new_backend)


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a temperature on validation logits; NLL, ECE and a reliability diagram",
                       description="Fit the temperature tau minimising the NLL of softmax(logits / tau) on validation "
                                   "data; print tau, NLL and ECE before (tau = 1) and after, and write both "
                                   "reliability diagrams to one PNG. LOGITS: (examples, classes); LABELS: "
                                   "(examples,) integer classes. Files: .npy, .npz (its first array, or "
                                   "FILE.npz:NAME for the array NAME) or .csv (comma-separated, no header).")
    p.add_argument("logits", metavar="LOGITS", help="validation logits: .npy, .npz[:NAME] or .csv")
    p.add_argument("labels", metavar="LABELS", help="their labels: .npy, .npz[:NAME] or .csv")
    p.add_argument("--out", default="reliability.png", metavar="PNG",
                   help="the reliability diagram (default ./reliability.png)")
    p.add_argument("--bins", type=int, default=15, metavar="N", help="equal-width confidence bins for ECE (default 15)")
    p.set_defaults(run=_cmd_calibrate)


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="the Stage 9 worked example, computed exactly",
                       description="Softmax, cross-entropy and its gradient step by step; chance level; loss ranges; "
                                   "temperature; label smoothing; CE against MSE gradients. Every number is "
                                   "computed exactly (mpmath) and rounded for display.")
    p.add_argument("--logits", help="your own logits, comma or space separated (--logits=-1,2 if the first is < 0)")
    p.add_argument("--target", type=int, help="the target class index for --logits")
    p.set_defaults(run=_cmd_explain)


def _add_exhaustive(sub) -> None:
    from .exhaustive import DTYPES, KINDS, SWEEP_OPS

    p = sub.add_parser("exhaustive", help="every finite bfloat16 and float16 input of the two-class ops, against its "
                                          "correctly rounded value",
                       description="Every finite bfloat16 and float16 x as the row [x, 0] through softmax, "
                                   "log_softmax, logsumexp and cross_entropy, value and vjp, on each backend; each "
                                   "answer against its correctly rounded value (float64 with a derived bound, the "
                                   "exact oracle where that is too close to a rounding boundary). Writes "
                                   "exhaustive.json, exhaustive.md and exhaustive.png to --out.")
    p.add_argument("--backends", default="numpy", help="comma-separated specs, as for check (default: numpy)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated (default: %(default)s)")
    p.add_argument("--ops", default=",".join(SWEEP_OPS), help="comma-separated (default: %(default)s)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated (default: %(default)s)")
    p.add_argument("--stride", type=int, default=1, help="every STRIDE-th value only: a reduced range (default 1)")
    p.add_argument("--pairs", action="store_true", help="also lse(a, b) over every pair a <= b of bfloat16 values "
                                                        "(2.1e9 pairs; --pairs-stride and --pairs-limit reduce it)")
    p.add_argument("--pairs-stride", type=int, default=1, help="pairs of every STRIDE-th bfloat16 value")
    p.add_argument("--pairs-limit", type=int, help="only the first N pairs")
    p.add_argument("--scheduler", metavar="ADDRESS", help="compute the correctly rounded values on a Dask cluster: "
                                                          "tcp://HOST:PORT or local:N (as for compare)")
    p.add_argument("--out", default="xentcheck-exhaustive", help="report folder (default ./xentcheck-exhaustive)")
    p.set_defaults(run=_cmd_exhaustive)


def _cmd_exhaustive(args) -> int:
    import json

    from .exhaustive import (DTYPES, KINDS, SWEEP_OPS, finite_values, plot, render_markdown, run_exhaustive,
                             run_lse_pairs)

    dtypes, ops = _choices("--dtypes", args.dtypes, DTYPES), _choices("--ops", args.ops, SWEEP_OPS)
    kinds = _choices("--kinds", args.kinds, KINDS)
    for option, value in (("--stride", args.stride), ("--pairs-stride", args.pairs_stride),
                          ("--pairs-limit", args.pairs_limit)):
        if value is not None and value < 1:
            raise UsageError(f"{option}: must be an integer >= 1; got {value}")
    specs = _names(args.backends) or ["numpy"]
    _loadable(specs)
    _output_folder("--out", args.out)
    with _dask_client(args.scheduler) as client:
        executor = client.get_executor() if client is not None else None
        results = run_exhaustive(specs, dtypes, ops, kinds, executor=executor, stride=args.stride)
        if args.pairs:
            results["pairs"] = run_lse_pairs(specs, finite_values("bfloat16", args.pairs_stride), args.pairs_limit,
                                             executor)
    results["timings"]["scheduler"] = args.scheduler or "this process"
    with open(os.path.join(args.out, "exhaustive.json"), "w") as f:
        json.dump(results, f, indent=1)
    markdown = render_markdown(results)
    with open(os.path.join(args.out, "exhaustive.md"), "w") as f:
        f.write(markdown)
    plot(results, os.path.join(args.out, "exhaustive.png"))
    print(markdown)
    print(f"Wrote: {', '.join(os.path.join(args.out, n) for n in ('exhaustive.json', 'exhaustive.md', 'exhaustive.png'))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xentcheck", description="Prove softmax and cross-entropy implementations right, value and gradient.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list the built-in backends and whether each is available here").set_defaults(
        run=_cmd_backends)
    sub.add_parser("departures", help="the documented departures a backend may declare (`departures = (NAME, ...)`)"
                   ).set_defaults(run=_cmd_departures)
    for add in (_add_bench, _add_check, _add_compare, _add_exhaustive, _add_calibrate, _add_explain, _add_new_backend):
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"xentcheck {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xentcheck {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line, never a traceback (XENTCHECK_DEBUG=1 shows it)
        if os.environ.get("XENTCHECK_DEBUG"):
            raise
        message = str(error).splitlines()[0] if str(error) else ""
        print(f"xentcheck {args.command}: internal error: {type(error).__name__}: {message} "
              "(XENTCHECK_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
