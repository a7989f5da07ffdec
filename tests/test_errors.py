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
