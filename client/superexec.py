"""Flower's SuperExec with warm ClientApp processes: `python -m fedrec.client.superexec [flower-superexec options]`.

Flower 1.42's SuperExec (the SuperNode's helper that runs each message's ClientApp) starts a fresh
`flwr-clientapp` process for every message; most of that process's life is importing Flower, numpy, scipy
and fedrec (about 2.8 s here), for a ClientApp call that takes milliseconds. This wrapper imports all of that
once, then forks a child per message that runs Flower's own `flwr-clientapp` entry point with the same
arguments: the same isolation (one process per message, its memory gone when it exits) and the same code,
without the imports. It also polls the SuperNode for tasks every FEDREC_TASK_POLL_SECONDS (default 0.02 s)
instead of Flower's 1 s. FEDREC_WARM_CLIENTAPP=0 turns the forking off (Flower's own launcher).
"""

from __future__ import annotations

import os
import signal
import sys

TASK_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"  # Flower's own setting (0.01 to ..., default 1.0 s)


def _run_in_child(args: list[str]) -> None:
    """The body of a forked child: Flower's flwr-clientapp main with `args`; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the parent ignores it to reap children; the app may not
        from flwr.supercore.exit import exit_handler

        # The parent's exit handlers (closing its connection to the SuperNode) are not this process's.
        del exit_handler.registered_exit_handlers[:]
        from flwr.supernode.cli.flwr_clientapp import flwr_clientapp

        sys.argv = ["flwr-clientapp", *args]  # Flower picks its exit behaviour by argv[0]
        flwr_clientapp()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:  # noqa: BLE001 - report, then leave without running the parent's code
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _launch_forked(self, spec):
    """SubprocessExecutor.launch, with a fork of this warm process instead of a new interpreter."""
    from flwr.supercore.superexec.executor import subprocess_executor as executor

    if spec.task_type not in (executor.TaskType.CLIENT_APP,):
        return _original_launch(self, spec)
    args = [executor.TASK_TYPE_TO_APPIO_API_ADDRESS_ARG[spec.task_type], spec.runtime_api_address, "--token", spec.token]
    if spec.insecure:
        args.append("--insecure")
    elif spec.root_certificates_path is not None:
        args += ["--root-certificates", spec.root_certificates_path]
    if spec.parent_pid is not None:
        args += ["--parent-pid", str(spec.parent_pid)]
    if spec.runtime_dependency_install:
        args.append("--allow-runtime-dependency-installation")
    if os.fork() == 0:
        if spec.suppress_output:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        _run_in_child(args)
    return executor.LaunchResult.accepted()


_original_launch = None


def main() -> None:
    global _original_launch
    os.environ.setdefault(TASK_POLL_ENV, os.environ.get("FEDREC_TASK_POLL_SECONDS", "0.02"))
    if os.environ.get("FEDREC_WARM_CLIENTAPP", "1") != "0":
        from flwr.supercore.superexec.executor import subprocess_executor

        try:  # everything a ClientApp call imports, once; each forked child starts with it loaded
            import flwr.supernode.cli.flwr_clientapp  # noqa: F401
            import flwr.supernode.runtime.run_clientapp  # noqa: F401

            import fedrec.client.app  # noqa: F401  (Flower's loader reuses a module already in sys.modules)
        except Exception as exc:  # noqa: BLE001 - Flower's own launcher then reports it per message
            print(f"fedrec superexec: warm ClientApps off, an import failed: {exc!r}", file=sys.stderr)
            return _run_flower_superexec()
        from fedrec.client import data
        from fedrec.shared.flower_waits import shorten_object_pull_retries

        if spec := os.environ.get(data.READ_AHEAD_ENV):
            try:
                data.read_ahead(spec)
            except Exception as exc:  # noqa: BLE001 - each ClientApp then reads the files and reports the problem
                print(f"fedrec superexec: the data files were not read ahead ({exc})", file=sys.stderr)

        shorten_object_pull_retries()  # inherited by every forked ClientApp, which pulls its message's objects
        _original_launch = subprocess_executor.SubprocessExecutor.launch
        subprocess_executor.SubprocessExecutor.launch = _launch_forked
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished children are reaped by the kernel
    _run_flower_superexec()


def _run_flower_superexec() -> None:
    from flwr.supercore.cli import flower_superexec

    sys.argv[0] = "flower-superexec"
    flower_superexec()


if __name__ == "__main__":
    main()
