"""CPU per request, in-process: the steadiest figure on a shared machine.

    .venv/bin/python bench/cpu.py                          # this checkout
    .venv/bin/python bench/cpu.py --against ../other-tree  # side by side with another version

Each version runs in a process of its own, over a database of its own, with the production
settings and Redis (BENCH_REDIS_URL, else database 14 of the local server): one account
signs in, makes an API key, and GET /api/v1/users/me is sent through httpx's ASGI transport,
with the access token and with the key, in rounds. A process's CPU time per request counts
the app's work (and the same client's), not the machine's other load, so versions run one
after the other, alternating, compare well. Prints the fastest round of each (the least
disturbed); `make bench` gives throughput and latency under wrk.
"""

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import dataset
import servers

ROOT = Path(__file__).resolve().parent.parent
ME = "/api/v1/users/me"
# Signing in is not measured here: the cost only has to be a real one.
BCRYPT_ROUNDS = 12


def measure(rounds: int, requests: int) -> dict[str, float]:
    """In the app's own checkout (the working directory): fastest round, CPU ms/request."""
    sys.path.insert(0, str(Path.cwd()))
    import httpx

    from main import create_app

    app = create_app()

    async def run() -> dict[str, float]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                password = secrets.token_urlsafe(16)
                account = {"email": "cpu@example.com", "password": password, "name": "CPU"}
                registered = await client.post("/api/v1/auth/register", json=account)
                assert registered.status_code == 201, registered.text
                form = {"username": account["email"], "password": password}
                tokens = (await client.post("/api/v1/auth/login", data=form)).json()
                credentials = {"token": {"Authorization": f"Bearer {tokens['access_token']}"}}
                issued = await client.post(
                    "/api/v1/api-keys", json={"name": "cpu"}, headers=credentials["token"]
                )
                if issued.status_code == 201:  # a version before API keys has none
                    credentials["api_key"] = {"Authorization": f"Bearer {issued.json()['key']}"}
                fastest = {name: float("inf") for name in credentials}
                for _ in range(rounds):
                    for name, headers in credentials.items():
                        started = time.process_time()
                        for _ in range(requests):
                            answer = await client.get(ME, headers=headers)
                            assert answer.status_code == 200, answer.text
                        spent = (time.process_time() - started) / requests * 1000
                        fastest[name] = min(fastest[name], spent)
                return fastest

    return asyncio.run(run())


def run_version(root: Path, rounds: int, requests: int) -> dict[str, float]:
    """One version, in a process of its own, over a fresh database."""
    database = dataset.database_for_this_run()
    dataset.create(database)
    # The production settings `make bench` serves the app with (bench/servers.py).
    env = servers.production_env(database.sqlalchemy_url, BCRYPT_ROUNDS)
    try:
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"migration failed:\n{migrated.stdout}{migrated.stderr}")
        measured = subprocess.run(  # noqa: S603
            [sys.executable, __file__, "--measure", str(rounds), str(requests)],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, float] = json.loads(measured.stdout.strip().splitlines()[-1])
        return result
    finally:
        dataset.drop(database)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=500, help="per round and credential")
    parser.add_argument("--repeat", type=int, default=2, help="alternations of the versions")
    parser.add_argument("--measure", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    versions = {"this": ROOT, **({"other": args.against.resolve()} if args.against else {})}
    fastest: dict[str, dict[str, float]] = {name: {} for name in versions}
    for _ in range(args.repeat):
        for name, root in versions.items():
            for credential, spent in run_version(root, args.rounds, args.requests).items():
                fastest[name][credential] = min(fastest[name].get(credential, spent), spent)
    for name, figures in fastest.items():
        shown = ", ".join(f"{credential} {spent:.3f} ms" for credential, spent in figures.items())
        print(f"{name} ({versions[name]}): GET {ME} CPU per request: {shown}")
    this = fastest["this"]
    if "api_key" in this:
        print(f"this: API key / access token CPU: {this['api_key'] / this['token']:.2f}x")
    if "other" in fastest:
        print(f"this / other, access token CPU: {this['token'] / fastest['other']['token']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
