#!/usr/bin/env python3
"""Check the settings of a Camelyon16 run (scripts/camelyon16.sh) before its first stage.

Usage: ``python scripts/camelyon16_settings.py ROOT MODEL [MODEL ...]``, the ``C16_*`` variables in the
environment. Every value is checked as the stage that uses it would: ``C16_CFG`` as a JSON object applied to
``configs/resnet18_<model>.json`` and validated as train.py validates a config, the option lists
(``C16_SAMPLE_ARGS``, ``C16_VALID_SAMPLE_ARGS``, ``C16_HNM_ARGS``, ``C16_PROBS_ARGS``) by the parsers of the
scripts they are passed to. Prints nothing and exits 0 when all are good; else one line on stderr naming the first
problem (``C16_X: what is wrong``) and exit status 2. The shell script checks the simple values (choices,
numbers) itself.
"""
import contextlib
import io
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]

from wsi.config import ConfigError, validate_config  # noqa: E402

#: The option lists and the script each one is passed to.
OPTION_LISTS = {"C16_SAMPLE_ARGS": "sample_coords", "C16_VALID_SAMPLE_ARGS": "sample_coords",
                "C16_HNM_ARGS": "hard_negatives", "C16_PROBS_ARGS": "probs_map"}


def check_cfg(text, models):
    """Problems of C16_CFG: not a JSON object, or a config of MODEL that train.py would refuse."""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        return [f"C16_CFG: not valid JSON ({err}): {text!r}"]
    if not isinstance(overrides, dict):
        return [f"C16_CFG: expected a JSON object of config keys, e.g. '{{\"epoch\": 1}}', got {text!r}"]
    problems = []
    for kind in models:
        source = ROOT / "configs" / f"resnet18_{kind}.json"
        cfg = json.loads(source.read_text())
        for name in ("tumor_train", "normal_train", "tumor_valid", "normal_valid"):  # as camelyon16.sh's configs
            del cfg[f"data_path_{name}"]
            cfg[f"coords_{name}"] = f"{name}.txt"
        cfg.update({"wsi_path_train": "slides", "wsi_path_valid": "slides"})
        cfg.update(overrides)
        try:
            validate_config(cfg, f"{source.name} with C16_CFG")
        except ConfigError as err:
            return [f"C16_CFG: {err}"]
    return problems


def check_options(name, text, module):
    """Problems of an option list: what the script's own parser says about it."""
    try:
        words = shlex.split(text)
    except ValueError as err:
        return [f"{name}: {err}: {text!r}"]
    if not words:
        return []
    parser = __import__(f"wsi.bin.{module}", fromlist=["get_args_parser"]).get_args_parser()
    positionals = [action for action in parser._actions if not action.option_strings]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(words + ["--"] + ["X"] * len(positionals))
    except SystemExit as stop:
        if stop.code:
            message = errors.getvalue().strip().splitlines()
            reason = message[-1].split("error: ", 1)[-1] if message else "refused"
            return [f"{name}: {module}.py refuses {text!r}: {reason}"]
    return []


def main(argv):
    models = list(dict.fromkeys(argv[1:]))
    problems = check_cfg(os.environ.get("C16_CFG") or "{}", models)
    for name, module in OPTION_LISTS.items():
        problems += check_options(name, os.environ.get(name, ""), module)
    if problems:  # the first one: one line, as every refusal of the command
        print(f"camelyon16.sh: error: {problems[0]}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
