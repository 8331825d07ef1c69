"""Execute the notebooks top to bottom and save them with their outputs.

    python notebooks/_execute.py                 # every notebook, full mode, saved in place
    python notebooks/_execute.py --quick 01      # quick mode (GENMNIST_QUICK=1), names containing "01"
    python notebooks/_execute.py --check         # execute, report, save nothing

Each notebook runs in a fresh ``python3`` kernel whose working directory is ``notebooks/`` (the
notebooks find the package and ``../shared/data/mnist`` from there) and whose outputs go to a
temporary directory (``GENMNIST_NOTEBOOK_OUT``).  A cell error stops that notebook with the cell's
traceback.  ``tests/test_notebooks.py`` runs :func:`execute_all` in quick mode.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
CELL_TIMEOUT = 1800  # seconds per cell; the longest full-mode cell (training) takes a few minutes


def notebook_paths(patterns=()):
    paths = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    return [p for p in paths if not patterns or any(s in p.name for s in patterns)]


async def execute_async(path, quick, out_dir, timeout=CELL_TIMEOUT, extra_env=None):
    """Run the notebook at ``path`` in a fresh kernel; return the executed ``nbformat`` node (not written).

    The kernel gets this process's environment plus GENMNIST_QUICK, GENMNIST_NOTEBOOK_OUT and ``extra_env``.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "GENMNIST_QUICK": "1" if quick else "0", "GENMNIST_NOTEBOOK_OUT": str(out_dir),
           **(extra_env or {})}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
        # TensorFlow's C++ start-up lines (absl, CUDA probing) go to the terminal, not into the outputs.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"])
    await client.async_execute(env=env)
    nb.metadata["genmnist"] = {"mode": "quick" if quick else "full"}
    return nb


def execute(path, quick, out_dir, timeout=CELL_TIMEOUT, extra_env=None):
    return asyncio.run(execute_async(path, quick, out_dir, timeout, extra_env))


def execute_all(paths, quick, out_root, timeout=CELL_TIMEOUT, extra_env=None):
    """Run several notebooks concurrently (one kernel each).

    Returns ``{path: (executed notebook or the exception raised, seconds)}``; never raises for a
    failing notebook, so the caller can report every failure.
    """
    async def one(path):
        start = time.perf_counter()
        out_dir = Path(out_root) / path.stem
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = await execute_async(path, quick, out_dir, timeout, extra_env)
        except Exception as err:  # noqa: BLE001  (reported to the caller)
            result = err
        return path, (result, time.perf_counter() - start)

    async def run():
        return dict(await asyncio.gather(*(one(Path(p)) for p in paths)))

    return asyncio.run(run())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="run only notebooks whose file name contains one of these")
    p.add_argument("--quick", action="store_true", help="GENMNIST_QUICK=1: short training, for a smoke run")
    p.add_argument("--check", action="store_true", help="execute but do not save")
    p.add_argument("--parallel", action="store_true", help="run the notebooks concurrently")
    args = p.parse_args(argv)
    import nbformat

    paths = notebook_paths(args.names)
    groups = [paths] if args.parallel else [[path] for path in paths]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="genmnist-notebooks-") as out_root:
        for group in groups:
            for path, (nb, seconds) in execute_all(group, args.quick, out_root).items():
                if isinstance(nb, Exception):
                    failed += 1
                    print(f"{path.name}: FAILED after {seconds:.0f} s\n{nb}", flush=True)
                    continue
                if not args.check:
                    nbformat.write(nb, path)
                print(f"{path.name}: executed in {seconds:.0f} s ({'quick' if args.quick else 'full'} mode)"
                      f"{'' if args.check else ', saved'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
