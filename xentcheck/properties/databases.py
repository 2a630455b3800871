"""Hypothesis example databases for --database: a directory, or a Redis server shared by many machines.

With a shared database a counterexample found by one worker of a long `explore` run is replayed first
by every other worker (Hypothesis replays saved failures before generating new examples).
"""
from __future__ import annotations

from urllib.parse import urlparse


def database_from_spec(spec: str):
    if spec.startswith("redis://"):
        url = urlparse(spec)
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise ValueError("--database redis://...: needs the redis package (pip install 'xentcheck[test]')") from None
        client = redis.Redis(host=url.hostname or "localhost", port=url.port or 6379, db=int(url.path[1:] or 0)
                             if url.path and url.path != "/" else 0, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.RedisError as error:
            raise ValueError(f"--database {spec}: cannot reach Redis ({error})") from None
        return RedisExampleDatabase(client, key_prefix=b"xentcheck:")
    from hypothesis.database import DirectoryBasedExampleDatabase

    return DirectoryBasedExampleDatabase(spec)
