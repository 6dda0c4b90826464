"""The ``empathy`` command: one entry point, each sub-command owned by the package that implements it.

Sub-commands are imported lazily so that ``empathy synth`` does not pay for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, function, one-line help). Each function takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("cli.synth", "main", "generate a synthetic OMG-Empathy-layout data set"),
    "inspect": ("cli.inspect", "main", "decode a video and summarise its streams (and its valence curve)"),
    "config": ("cli.config", "main", "print the configuration reference or the current values"),
    "train": ("cli.train", "train_main", "train one modality and export a versioned SavedModel"),
    "evaluate": ("cli.train", "evaluate_main", "CCC per subject and story (the paper's Table I)"),
    "score": ("cli.score", "main", "score prediction CSVs against annotation CSVs (official calculateCCC.py maths)"),
    "analyze": ("cli.analyze", "main", "run the whole pipeline in this process on a video (or a folder)"),
    "submit": ("cli.submit", "main", "upload videos (one, or a folder as a resumable batch) to a running gateway"),
    "webhook-verify": ("cli.webhook_verify", "main", "check the signature of a received completion callback"),
    "storage": ("cli.storage", "main", "check the job storage, or expire jobs older than the retention"),
    "models": ("cli.models", "main", "publish versioned models to the object store (push) or list them"),
    "up": ("cli.up", "main", "start the whole ensemble as local processes"),
    "serve-models": ("services.model_server.cli", "main", "serve models/ with TF Serving's gRPC and REST APIs"),
    "bench": ("bench.run", "main", "benchmark analyze and the ensemble on a synthetic 1280x720 video"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    rows = "\n".join(f"  {name.ljust(width)}  {help_}" for name, (_, _, help_) in COMMANDS.items())
    return f"usage: empathy <command> [options]\n\ncommands:\n{rows}\n\n'empathy <command> --help' for details."


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"empathy: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"empathy: command {name!r} is not available in this installation ({exc})", file=sys.stderr)
        return 2
    return int(getattr(module, func_name)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
