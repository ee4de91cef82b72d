"""Fixtures from the environment that tests/mp_python.rs sets up.

VLIBCLIENT_LIB: libvlibclient.so. VLIB_TEST_SOCKET / VLIB_TEST_SERVER_PID: the real api-server.
VLIB_TEST_PINGING_SOCKET: a fake server that sends memclnt_keepalive every 20 ms.
"""
import os

import pytest


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run these tests through `cargo test -p vlibclient --test mp_python`" % name)
    return value


@pytest.fixture
def server():
    return _env("VLIB_TEST_SOCKET"), int(_env("VLIB_TEST_SERVER_PID"))


@pytest.fixture
def pinging_server():
    return _env("VLIB_TEST_PINGING_SOCKET")
