"""wsi/errors.py: the one module that holds every error class a caller of the library may catch."""

import importlib
import pkgutil

import wsi
import wsi.errors


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_every_error_class_lives_in_wsi_errors_and_is_exported():
    for module in pkgutil.walk_packages(wsi.__path__, "wsi."):
        importlib.import_module(module.name)
    errors = set(all_subclasses(wsi.errors.WSIError)) | {wsi.errors.WSIError}
    assert len(errors) > 20
    assert {cls.__module__ for cls in errors} == {"wsi.errors"}, sorted(
        f"{cls.__module__}.{cls.__name__}" for cls in errors if cls.__module__ != "wsi.errors")
    assert sorted(wsi.errors.__all__) == sorted(cls.__name__ for cls in errors)


def test_the_modules_that_raise_them_name_the_same_classes():
    from wsi.data.slide import LevelError
    from wsi.model.checkpoint import CheckpointError
    from wsi.model.runtime import RuntimeUnavailable

    assert LevelError is wsi.errors.LevelError and CheckpointError is wsi.errors.CheckpointError
    assert RuntimeUnavailable is wsi.errors.RuntimeUnavailable


def test_library_messages_name_parameters_and_the_scripts_name_options(tmp_path, capsys):
    import pickle

    import numpy as np
    import pytest

    from wsi.bin.nms import main
    from wsi.eval.nms import nms

    with pytest.raises(wsi.errors.ParameterError) as err:
        nms(np.zeros((4, 4)), level=6, radius=0)
    assert str(err.value) == "radius must be at least 1, got 0" and "--" not in str(err.value)
    again = pickle.loads(pickle.dumps(err.value))  # crosses process boundaries whole (DataLoader workers, pools)
    assert str(again) == str(err.value) and again.as_option() == "--radius must be at least 1, got 0"
    np.save(tmp_path / "map.npy", np.zeros((4, 4)))
    assert main([str(tmp_path / "map.npy"), str(tmp_path / "out.csv"), "--radius", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("error: --radius must be at least 1, got 0")


def test_no_library_error_message_names_a_command_line_flag():
    """Library modules (everything outside wsi/bin and wsi/cli.py) raise messages that name parameters; the
    scripts add the `--`. Flags in docstrings and comments are fine."""
    import re
    from pathlib import Path

    root = Path(wsi.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.parent.name == "bin" or path.name == "cli.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"Error\(.*[\"']--[a-z]", line) or re.search(r"^\s+f?[\"'].*--[a-z_]+.*[\"']\)?$", line) \
                    and "raise" in "".join(path.read_text().splitlines()[max(0, number - 3):number]):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == KNOWN_FLAG_MESSAGES, "\n".join(offenders)


# Messages allowed to name a flag (none: a hint names the parameter, the scripts print it as their option).
KNOWN_FLAG_MESSAGES = []
