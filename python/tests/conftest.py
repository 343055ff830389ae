"""Shared fixtures. ctest sets PYTHONPATH (the built package), GSOFT_CLI and GSOFT_TEST_DATA; run by
hand as: PYTHONPATH=build/python GSOFT_CLI=build/gsoft /usr/bin/python3 -m pytest python/tests"""
import os
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_dir():
    return pathlib.Path(os.environ.get("GSOFT_TEST_DATA", ROOT / "tests" / "data"))


@pytest.fixture(scope="session")
def cli():
    path = pathlib.Path(os.environ.get("GSOFT_CLI", ROOT / "build" / "gsoft"))
    if not path.exists():
        pytest.fail(f"the gsoft command-line tool is not at {path}; build it or set GSOFT_CLI")
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
