"""The client address: the socket peer, or what trusted proxies say it was.

Pure tests of `ClientAddressResolver.resolve`, then the same answer seen in the
access log of the real app.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.application import create_app
from app.core.access_log import ACCESS_LOGGER, AccessLogger
from app.core.client_address import ClientAddressResolver
from tests.support.apps import ConfigFactory

LOOPBACK = ("127.0.0.0/8", "::1/128")  # the default of server.trusted_proxies
CLIENT = "203.0.113.9"


@pytest.fixture
def loopback() -> ClientAddressResolver:
    return ClientAddressResolver(LOOPBACK)


@pytest.fixture
def private() -> ClientAddressResolver:
    """Loopback plus a private network of proxies (a load balancer, an ingress)."""
    return ClientAddressResolver((*LOOPBACK, "10.0.0.0/8"))


# --- untrusted peers -------------------------------------------------------------------


def test_an_untrusted_peer_is_the_client(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve(CLIENT, []) == CLIENT


def test_an_untrusted_peer_cannot_spoof_with_x_forwarded_for(
    loopback: ClientAddressResolver,
) -> None:
    assert loopback.resolve(CLIENT, ["1.2.3.4"]) == CLIENT
    assert loopback.resolve(CLIENT, ["127.0.0.1"]) == CLIENT
    assert loopback.resolve(CLIENT, ["1.2.3.4", "5.6.7.8, 9.9.9.9"]) == CLIENT


def test_a_peer_outside_every_configured_network_is_untrusted(
    private: ClientAddressResolver,
) -> None:
    assert private.resolve("11.0.0.1", ["1.2.3.4"]) == "11.0.0.1"


def test_with_no_trusted_proxies_even_loopback_is_the_client() -> None:
    resolver = ClientAddressResolver(())
    assert resolver.resolve("127.0.0.1", [CLIENT]) == "127.0.0.1"


def test_a_missing_peer_never_believes_x_forwarded_for(loopback: ClientAddressResolver) -> None:
    resolved = loopback.resolve(None, [CLIENT])
    assert isinstance(resolved, str)
    assert resolved != CLIENT


# --- trusted peers ---------------------------------------------------------------------


def test_a_trusted_peer_without_x_forwarded_for_is_the_client(
    loopback: ClientAddressResolver,
) -> None:
    assert loopback.resolve("127.0.0.1", []) == "127.0.0.1"


def test_a_trusted_peer_forwards_the_client(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", [CLIENT]) == CLIENT
    assert loopback.resolve("127.0.0.5", [CLIENT]) == CLIENT  # the whole 127.0.0.0/8


def test_the_right_most_untrusted_entry_is_the_client(loopback: ClientAddressResolver) -> None:
    # Entries left of the last one were written by the client itself or by
    # proxies we know nothing about: only the right-most is vouched for.
    assert loopback.resolve("127.0.0.1", ["198.51.100.1, 198.51.100.2, 203.0.113.9"]) == CLIENT


def test_a_chain_of_trusted_proxies_is_walked_back(private: ClientAddressResolver) -> None:
    assert private.resolve("127.0.0.1", ["203.0.113.9, 10.1.1.1, 10.2.2.2"]) == CLIENT
    assert private.resolve("10.3.3.3", ["203.0.113.9, 10.1.1.1"]) == CLIENT


def test_a_prepended_fake_address_is_ignored(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", ["1.2.3.4, 203.0.113.9"]) == CLIENT


def test_a_prepended_fake_address_is_ignored_behind_a_chain(
    private: ClientAddressResolver,
) -> None:
    assert private.resolve("127.0.0.1", ["1.2.3.4, 203.0.113.9, 10.1.1.1"]) == CLIENT


def test_a_fake_trusted_address_prepended_by_the_client_is_ignored(
    private: ClientAddressResolver,
) -> None:
    # The client claims to be a trusted proxy itself; the walk stops at the
    # first untrusted entry from the right, so the claim is never reached.
    assert private.resolve("127.0.0.1", ["10.9.9.9, 203.0.113.9, 10.1.1.1"]) == CLIENT


def test_several_header_lines_are_one_list_in_order(private: ClientAddressResolver) -> None:
    assert private.resolve("127.0.0.1", ["1.2.3.4", "203.0.113.9", "10.1.1.1"]) == CLIENT
    assert private.resolve("127.0.0.1", ["1.2.3.4, 203.0.113.9", "10.1.1.1, 10.2.2.2"]) == CLIENT


def test_entries_are_trimmed(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", ["  1.2.3.4 ,   203.0.113.9  "]) == CLIENT


def test_every_entry_trusted_gives_the_left_most(private: ClientAddressResolver) -> None:
    assert private.resolve("127.0.0.1", ["10.0.0.1, 10.0.0.2, 10.0.0.3"]) == "10.0.0.1"


# --- address forms ---------------------------------------------------------------------


def test_ipv6_peer_and_client(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("::1", ["2001:db8::7"]) == "2001:db8::7"


def test_an_untrusted_ipv6_peer_cannot_spoof(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("2001:db8::1", ["203.0.113.9"]) == "2001:db8::1"


def test_bracketed_ipv6_with_a_port(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", ["[2001:db8::7]:443"]) == "2001:db8::7"
    assert loopback.resolve("::1", ["[2001:db8::7]"]) == "2001:db8::7"


def test_ipv4_with_a_port(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", ["203.0.113.9:51234"]) == CLIENT


def test_a_trusted_proxy_with_a_port_is_still_trusted(private: ClientAddressResolver) -> None:
    assert private.resolve("127.0.0.1", ["203.0.113.9, 10.1.1.1:8080"]) == CLIENT


def test_an_ipv4_mapped_ipv6_peer_is_trusted_loopback(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("::ffff:127.0.0.1", [CLIENT]) == CLIENT


def test_an_ipv4_mapped_client_is_given_as_ipv4(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", ["::ffff:203.0.113.9"]) == CLIENT


def test_an_ipv4_mapped_proxy_in_the_chain_is_trusted(private: ClientAddressResolver) -> None:
    assert private.resolve("127.0.0.1", ["203.0.113.9, ::ffff:10.1.1.1"]) == CLIENT


# --- garbage ---------------------------------------------------------------------------

GARBAGE = ["unknown", "", "not-an-ip", "999.1.1.1", "_hidden", "1.2.3", "[::1", "a:b"]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_alone_is_never_the_client(loopback: ClientAddressResolver, garbage: str) -> None:
    assert loopback.resolve("127.0.0.1", [garbage]) == "127.0.0.1"


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_right_of_the_client_is_never_the_client(
    private: ClientAddressResolver, garbage: str
) -> None:
    resolved = private.resolve("127.0.0.1", [f"{CLIENT}, {garbage}, 10.1.1.1"])
    assert resolved != garbage.strip()
    # The chain is no longer believable past the garbage: the last believed hop answers.
    assert resolved == "10.1.1.1"


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_left_of_the_client_is_irrelevant(
    loopback: ClientAddressResolver, garbage: str
) -> None:
    assert loopback.resolve("127.0.0.1", [f"{garbage}, {CLIENT}"]) == CLIENT


def test_an_empty_header_value_leaves_the_peer(loopback: ClientAddressResolver) -> None:
    assert loopback.resolve("127.0.0.1", [""]) == "127.0.0.1"
    assert loopback.resolve("127.0.0.1", [",,"]) == "127.0.0.1"


# --- through the real app --------------------------------------------------------------


async def access_client(aiohttp_client, app) -> TestClient:
    """A client of `app` served with Keel's access logger, the way `run.py serve` does.

    pytest-aiohttp's `server_kwargs` go to `TestServer.__init__`, which drops
    them; runner options are only honoured by `start_server`.
    """
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger, access_log=ACCESS_LOGGER)
    return await aiohttp_client(server)


async def access_records(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The access log is written after the response is sent: wait for it."""
    for _ in range(200):
        records = [r for r in caplog.records if r.name == ACCESS_LOGGER.name]
        if len(records) >= count:
            return records
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} access log record(s), got {len(records)}")


async def test_access_log_shows_the_forwarded_client_behind_a_trusted_peer(
    aiohttp_client, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER.name)
    client = await access_client(aiohttp_client, create_app(make_config()))
    response = await client.get("/healthz", headers={"X-Forwarded-For": f"1.2.3.4, {CLIENT}"})
    assert response.status == 200
    (record,) = await access_records(caplog, 1)
    assert record.fields["client"] == CLIENT  # type: ignore[attr-defined]
    assert record.getMessage().startswith(f"{CLIENT} ")


async def test_access_log_shows_the_peer_when_no_proxy_is_trusted(
    aiohttp_client, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER.name)
    app = create_app(make_config(SERVER__TRUSTED_PROXIES="[]"))
    client = await access_client(aiohttp_client, app)
    response = await client.get("/healthz", headers={"X-Forwarded-For": CLIENT})
    assert response.status == 200
    (record,) = await access_records(caplog, 1)
    assert record.fields["client"] == "127.0.0.1"  # type: ignore[attr-defined]
    assert record.getMessage().startswith("127.0.0.1 ")


async def test_access_log_reads_every_x_forwarded_for_line(
    aiohttp_client, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER.name)
    app = create_app(make_config(SERVER__TRUSTED_PROXIES='["127.0.0.0/8", "10.0.0.0/8"]'))
    client = await access_client(aiohttp_client, app)
    headers = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", f"{CLIENT}, 10.1.1.1")]
    response = await client.get("/healthz", headers=headers)
    assert response.status == 200
    (record,) = await access_records(caplog, 1)
    assert record.fields["client"] == CLIENT  # type: ignore[attr-defined]
