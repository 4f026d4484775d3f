"""What the tests share, one concept per module.

services.py       where the machine's Redis, PostgreSQL and RabbitMQ are; fail or skip
                  when one is missing; free ports; the repository; this run's id
apps.py           the fixtures' types (ConfigFactory, StartApp); a plugin by name
polling.py        eventually(): wait for a condition, never sleep a fixed time
process.py        KeelProcess: `run.py` as a real subprocess, for signals and logs
private_redis.py  a redis-server of the test's own, to pause (SIGSTOP), resume and restart empty
tcp_proxy.py      a TCP proxy the test can cut (refuse, blackhole), slow down, and restore
clock.py          a clock the test moves by hand
redis.py          a batcher on the machine's Redis, closed on exit; deleting a test's keys
postgres.py       throwaway PostgreSQL databases
plugins/          plugins made for tests: probe (routes that exercise the core),
                  recording (lifecycle events for loader tests)
"""
