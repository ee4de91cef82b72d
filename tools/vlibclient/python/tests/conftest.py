"""Fixtures from the environment that tests/mp_python.rs sets up.

VLIBCLIENT_LIB: libvlibclient.so. VLIB_TEST_SOCKET / VLIB_TEST_SERVER_PID / VLIB_TEST_SHM_PREFIX:
the real api-server, which publishes its named shared-memory segment under that prefix.
VLIB_TEST_PINGING_SOCKET: a fake server that sends memclnt_keepalive every 20 ms.
VLIB_TEST_KEEPALIVE_SOCKET / _PREFIX / _LOG: a real api-server that pings shared-memory clients
silent for 0.5 s (--keepalive-interval 0.5), and its log file.
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


@pytest.fixture
def shm_server():
    return _env("VLIB_TEST_SOCKET"), int(_env("VLIB_TEST_SERVER_PID")), _env("VLIB_TEST_SHM_PREFIX")


@pytest.fixture
def keepalive_server():
    return _env("VLIB_TEST_KEEPALIVE_SOCKET"), _env("VLIB_TEST_KEEPALIVE_PREFIX"), _env("VLIB_TEST_KEEPALIVE_LOG")
