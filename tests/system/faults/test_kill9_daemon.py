"""kill -9 the daemon at random moments while it refreshes (and rewrites) a user's token cache:
the cache file always loads afterwards."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from pathlib import Path

import msal

from bearerd.emulator import EmulatorStack
from support.configs import TEST_APPS, user_config
from support.processes import bearerd_cli, run_login


async def test_kill_9_during_refreshes_never_corrupts_the_cache(tmp_path: Path) -> None:
    # Tokens live 2 s, so the daemon refreshes (and rewrites the cache) about every second.
    async with EmulatorStack(tmp_path / "e", token_lifetime_s=2, apps=TEST_APPS) as stack:
        config, _ = user_config(stack, tmp_path)
        assert (await run_login(stack, config))[0] == 0
        cache_file = tmp_path / "state" / "alice.msal-cache.json"
        rng = random.Random(9)
        writes_before = stack.entra.token_calls(stack.public_client_id)
        for _ in range(5):
            proc = await bearerd_cli(
                "run",
                "-c",
                str(config),
                "--log-level",
                "error",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            # Once it is in its refresh cycle (its first acquisition rewrote the file), kill it at a random moment.
            calls = stack.entra.token_calls(stack.public_client_id)
            for _ in range(300):
                if stack.entra.token_calls(stack.public_client_id) > calls:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            data = json.loads(cache_file.read_text())  # whole: the old file or the new one, never half
            cache = msal.SerializableTokenCache()
            cache.deserialize(json.dumps(data))
            accounts = list(cache.search(msal.TokenCache.CredentialType.ACCOUNT))
            assert [a["username"] for a in accounts] == [stack.user]
        # The daemons really were refreshing (and so rewriting the file) while being killed.
        assert stack.entra.token_calls(stack.public_client_id) - writes_before >= 5
