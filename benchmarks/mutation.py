"""Mutation testing of three modules whose tests must catch real bugs (issue 16, item 7), with mutmut.

    ./run.sh bench mutation                 # all three modules
    ./run.sh bench mutation dicom/perf.py   # one module (path under perfnode/)

For each module, mutmut makes small changes to the code (an operator, a constant, a condition, a
returned value …) and runs the module's tests against each; a mutant no test notices "survives". The
script works on a copy of the repository in a temporary folder (mutmut writes its ``mutants/`` tree
there), prints killed / survived / other per module, then every surviving mutant as a diff, and exits
1 when ``perfnode/dicom/perf.py`` has a survivor (the goal is 0 there).

Only in-process tests are selected for each module (no node subprocess): a test that starts
``perfnode serve`` would run the unmutated code in its child process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module (under perfnode/) → the tests that exercise it in-process.
MODULES: dict[str, list[str]] = {
    "dicom/perf.py": ["tests/dicom/test_perf_findings.py", "tests/dicom/test_perf_rules.py",
                      "tests/dicom/test_perf_mutants.py",
                      "tests/dicom/test_fast_paths.py", "tests/dicom/test_check_command.py",
                      "tests/phantoms/test_dicom_objects.py"],
    "archive/query.py": ["tests/test_query.py", "tests/test_query_brackets.py"],
    "perfusion/deconvolution.py": ["tests/perfusion/test_deconvolution.py", "tests/perfusion/test_dsc.py",
                                   "tests/perfusion/test_reference_dsc.py", "tests/perfusion/test_ctp.py"],
}
#: The module whose survivors fail the run.
GATED = "dicom/perf.py"


def mutmut(workdir: Path, *args: str, timeout: float = 4 * 3600) -> subprocess.CompletedProcess[str]:
    # one BLAS thread per test process: mutmut runs two at once, and spinning BLAS threads on a shared
    # machine burn the CPU-time budget mutmut gives each mutant (it then reports a timeout)
    env = dict(os.environ, PYTHONPATH=str(workdir), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, env=env, text=True,
                          capture_output=True, timeout=timeout)


def prepare(workdir: Path, module: str, tests: list[str]) -> None:
    """A copy of the repository with a [tool.mutmut] section for this module."""
    shutil.copytree(ROOT, workdir, ignore=shutil.ignore_patterns(
        ".git", ".venv", "mutants", "__pycache__", "*.pyc", "perfnode-data", ".pytest_cache"))
    pyproject = workdir / "pyproject.toml"
    text = pyproject.read_text()
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["perfnode"]\n'
        f'only_mutate = ["perfnode/{module}"]\n'
        f"pytest_add_cli_args_test_selection = {tests!r}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
    ).replace("'", '"')
    pyproject.write_text(text)


def results(workdir: Path) -> dict[str, str]:
    """mutant name → status (killed, survived, timeout, no tests, …) from ``mutmut results --all``."""
    out = mutmut(workdir, "results", "--all", "true").stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+__mutmut_\d+):\s*(.+?)\s*$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def run_module(module: str, tests: list[str], keep: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    workdir = Path(tempfile.mkdtemp(prefix="perfnode-mutation-")) / "repo"
    try:
        prepare(workdir, module, tests)
        t0 = time.monotonic()
        res = mutmut(workdir, "run", "--max-children", str(os.cpu_count() or 2))
        took = time.monotonic() - t0
        statuses = results(workdir)
        if not statuses:
            print(res.stdout[-4000:], res.stderr[-4000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"mutation: mutmut produced no results for {module}")
        counts: dict[str, int] = {}
        for status in statuses.values():
            counts[status] = counts.get(status, 0) + 1
        survivors = []
        for name, status in sorted(statuses.items()):
            if status == "survived":
                survivors.append((name, mutmut(workdir, "show", name).stdout.strip()))
        print(f"{module}: {len(statuses)} mutants in {took:.0f} s: "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)
        return counts, survivors
    finally:
        if keep:
            print(f"(work folder kept: {workdir})")
        else:
            shutil.rmtree(workdir.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), help="modules under perfnode/")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (to inspect mutants)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}: one of {list(MODULES)}")
    failed = False
    summary = []
    for module in args.modules:
        counts, survivors = run_module(module, MODULES[module], args.keep)
        summary.append((module, counts, len(survivors)))
        for name, diff in survivors:
            print(f"\nsurvived: {name}\n{diff}")
        failed |= module == GATED and bool(survivors)
    print("\nmodule                         mutants  killed  survived  other")
    for module, counts, n_survived in summary:
        total = sum(counts.values())
        killed = counts.get("killed", 0)
        print(f"{module:<30} {total:>7} {killed:>7} {n_survived:>9} {total - killed - n_survived:>6}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
