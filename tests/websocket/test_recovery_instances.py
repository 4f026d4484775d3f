"""Recovery across real instances: concurrent publishers, a SIGKILLed instance, a Redis restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.polling import eventually
from tests.support.private_redis import PrivateRedis
from tests.support.process import KeelProcess
from tests.websocket.conftest import WITH_REDIS, Peer, instance_toml, resubscribe, service_of

CHANNEL = "chat.room"


async def test_offsets_stay_consecutive_under_concurrent_publishers_on_two_instances(
    start_app, connect, shared_redis
) -> None:
    settings = {**shared_redis, "WEBSOCKET__HISTORY_SIZE": "5000"}
    a = await start_app(WITH_REDIS, **settings)
    b = await start_app(WITH_REDIS, **settings)
    watchers = [await connect(a), await connect(b)]
    for peer in watchers:
        await resubscribe(peer, CHANNEL)
    per_instance = 1500

    async def publish_from(client, name: str) -> None:
        service = service_of(client)
        # Many publishers at once on each instance, as request handlers would.
        await asyncio.gather(*(service.publish(CHANNEL, f"{name}{n}") for n in range(per_instance)))

    await asyncio.gather(publish_from(a, "a"), publish_from(b, "b"))
    total = 2 * per_instance
    seen = [[await peer.next(timeout=5) for _ in range(total)] for peer in watchers]
    assert [m["offset"] for m in seen[0]] == list(range(1, total + 1))  # no gap, no duplicate
    assert seen[0] == seen[1]  # one order, everywhere
    assert {m["data"] for m in seen[0]} == {f"{x}{n}" for x in "ab" for n in range(per_instance)}

    # And the history holds them all, in that order, for whoever comes back from 0.
    late = await connect(b)
    messages, ok = await resubscribe(late, CHANNEL, {"offset": 0, "epoch": seen[0][0]["epoch"]})
    assert messages == seen[0]
    assert (ok["recovered"], ok["offset"]) == (True, total)


async def test_a_client_of_a_sigkilled_instance_recovers_on_another(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    toml = instance_toml(redis_url, redis_prefix)
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    first, second = KeelProcess(dirs[0], toml), KeelProcess(dirs[1], toml)
    await asyncio.gather(first.start(), second.start())
    try:
        async with aiohttp.ClientSession() as session:
            peer = Peer(await session.ws_connect(f"{first.url}/ws"))
            watcher = Peer(await session.ws_connect(f"{second.url}/ws"))
            for who in (peer, watcher):
                await resubscribe(who, CHANNEL)
            await peer.send({"op": "publish", "channel": CHANNEL, "data": "before"})
            last = await watcher.next()
            assert await peer.next() == last  # its own message, then the ok
            assert await peer.next() == {"op": "ok", "ref": None}

            # Presence over both instances, then the first dies without a word.
            async def counted(expected: int) -> bool:
                reply = await watcher.op({"op": "presence", "channel": CHANNEL})
                return reply["subscribers"] == expected

            await eventually(lambda: counted(2), what="presence to count both instances")
            await first.kill()  # SIGKILL
            await peer.close_code()

            missed = [f"missed {n}" for n in range(40)]
            for data in missed:
                await watcher.send({"op": "publish", "channel": CHANNEL, "data": data})
                assert (await watcher.next())["data"] == data
                assert await watcher.next() == {"op": "ok", "ref": None}
            # Its counts expire with it (heartbeat_ttl = 1 s).
            await eventually(lambda: counted(1), what="the dead instance's count to expire")

            again = Peer(await session.ws_connect(f"{second.url}/ws"))
            since = {"offset": last["offset"], "epoch": last["epoch"]}
            messages, ok = await resubscribe(again, CHANNEL, since, ref="back")
            assert [m["data"] for m in messages] == missed
            assert [m["offset"] for m in messages] == list(
                range(last["offset"] + 1, last["offset"] + 41)
            )
            assert ok == {
                "op": "ok",
                "ref": "back",
                "recovered": True,
                "offset": last["offset"] + 40,
                "epoch": last["epoch"],
            }
            await again.ws.close()
            await watcher.ws.close()
    finally:
        await first.kill()
        await second.kill()
    assert "Traceback" not in second.log()


async def test_a_restarted_redis_starts_a_new_epoch(
    start_app, connect, private_redis: PrivateRedis
) -> None:
    client = await start_app(
        WITH_REDIS, REDIS__URL=private_redis.url, WEBSOCKET__HISTORY_SIZE="100"
    )
    service = service_of(client)
    peer = await connect(client)
    _, ok = await resubscribe(peer, CHANNEL)
    await service.publish(CHANNEL, "one")
    before = await peer.next()
    assert before["offset"] == 1
    await peer.ws.close()

    private_redis.restart()  # the history is gone with it

    history = service.history
    assert history is not None

    async def stamped_again() -> bool:
        await service.publish(CHANNEL, "after")
        return history.channels()[CHANNEL].epoch != before["epoch"]

    await eventually(stamped_again, what="publishing to reach the new Redis", every=0.1)
    again = await connect(client)
    since = {"offset": before["offset"], "epoch": before["epoch"]}
    messages, ok = await resubscribe(again, CHANNEL, since)
    assert messages == []
    assert ok["recovered"] is False
    assert ok["epoch"] != before["epoch"]
    assert ok["offset"] >= 1
    await service.publish(CHANNEL, "live")
    message = await again.next()
    assert (message["epoch"], message["offset"]) == (ok["epoch"], ok["offset"] + 1)
    # The client takes the new position and recovers from there next time.
    await again.ws.close()
    await service.publish(CHANNEL, "missed")
    back = await connect(client)
    messages, ok = await resubscribe(
        back, CHANNEL, {"offset": message["offset"], "epoch": message["epoch"]}
    )
    assert [m["data"] for m in messages] == ["missed"]
    assert ok["recovered"] is True


async def test_what_is_published_while_redis_is_away_reaches_every_instance_once_it_is_back(
    start_app, connect, private_redis: PrivateRedis
) -> None:
    """Held while the script cannot number them, then sent in order: each subscriber, on
    either instance, gets each message once, numbered, after the outage (the fault
    report's Redis partition lost them before: they reached the publishing instance
    only, with no offset, and no client could recover them)."""
    settings = {
        "REDIS__URL": private_redis.url,
        "REDIS__HEARTBEAT_INTERVAL": "0.2",
        "BREAKERS__REDIS__MINIMUM_CALLS": "1",
        "BREAKERS__REDIS__OPEN_SECONDS": "30",
        "WEBSOCKET__HISTORY_SIZE": "100",
    }
    a = await start_app(WITH_REDIS, **settings)
    b = await start_app(WITH_REDIS, **settings)
    here, there = await connect(a), await connect(b)
    _, ok = await resubscribe(here, CHANNEL)
    await resubscribe(there, CHANNEL)
    service = service_of(a)
    private_redis.pause()
    try:
        for n in range(3):  # the first waits out the socket timeout; the breaker opens
            await service.publish(CHANNEL, n)
        assert service.state()["history"]["held"] == 3
        await here.silent(0.1)
        reply = await there.op(
            {"op": "subscribe", "channel": CHANNEL, "since": {"offset": 0, "epoch": ok["epoch"]}}
        )
        assert reply == {"op": "ok", "ref": None, "recovered": False}
    finally:
        private_redis.resume()
    for peer in (here, there):
        got = [await peer.next(timeout=15) for _ in range(3)]
        assert [(m["data"], m["offset"], m["epoch"]) for m in got] == [
            (n, n + 1, ok["epoch"]) for n in range(3)
        ]
        await peer.silent(0.1)
    state = service.state()["history"]
    assert (state["held"], state["held_total"], state["unstamped"]) == (0, 3, 0)
