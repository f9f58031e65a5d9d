"""Rotated material: FileMaterial under a fake ``stat`` (no read while nothing changed, parse before
swap, a refusal logged once) and VaultMaterial under a fake clock (refresh interval, stale refetch)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from bearerd.config.schema import ClientSecretCredential, Credential
from bearerd.config.secrets import CredentialSecrets
from bearerd.tokens import material
from bearerd.tokens.material import FileMaterial, VaultMaterial
from bearerd.tokens.results import IdentityProviderError
from support.clock import FakeClock

SECRET_FILE = Path("/run/secrets/app")


class FakeFiles:
    """``stat`` results the test sets, and what a read of the file returns (or raises)."""

    def __init__(self) -> None:
        self.state = (1, 10, 100)  # mtime_ns, size, inode
        self.content: str | None = "secret-1"
        self.reads = 0

    def stat(self, path: Path) -> os.stat_result:
        mtime, size, inode = self.state
        fields = [0] * 19
        fields[0], fields[1], fields[6], fields[14] = 0o100600, inode, size, mtime  # mode, ino, size, mtime_ns
        return os.stat_result(fields)

    def reread(self, cred: Credential, previous: CredentialSecrets) -> CredentialSecrets:
        self.reads += 1
        if not self.content:
            raise ValueError(f"client secret file {str(SECRET_FILE)!r} is empty")
        return CredentialSecrets(SecretStr(self.content))

    def write(self, content: str | None, inode: int | None = None) -> None:
        mtime, _, old_inode = self.state
        self.content = content
        self.state = (mtime + 1, len(content or ""), inode or old_inode)


@pytest.fixture
def files() -> FakeFiles:
    return FakeFiles()


def watcher(files: FakeFiles) -> FileMaterial:
    cred = ClientSecretCredential(kind="client_secret", tenant_id="t", client_id="c", client_secret_file=SECRET_FILE)
    current = CredentialSecrets(SecretStr("secret-1"))
    return FileMaterial("app", cred, current, stat=files.stat, reread=files.reread)


def value(secrets: CredentialSecrets | None) -> str | None:
    return secrets.client_secret.get_secret_value() if secrets and secrets.client_secret else None


def test_nothing_changed_means_no_read(files: FakeFiles) -> None:
    w = watcher(files)
    for _ in range(5):
        assert w.check() is None
    assert files.reads == 0


def test_a_changed_file_is_read_and_swapped_once(files: FakeFiles) -> None:
    w = watcher(files)
    files.write("secret-2")
    with capture_logs() as logs:
        assert value(w.check()) == "secret-2"
        assert w.check() is None
    assert files.reads == 1
    assert [e["event"] for e in logs] == ["credential.rotated"]
    assert "secret-2" not in str(logs)


def test_a_new_inode_with_the_same_mtime_and_size_counts_as_a_change(files: FakeFiles) -> None:
    w = watcher(files)
    files.content = "secret-X"
    files.state = (files.state[0], files.state[1], 999)  # a Kubernetes symlink swap: another file, same stamp
    assert value(w.check()) == "secret-X"


def test_a_half_written_file_never_replaces_the_good_secret_and_is_logged_once(files: FakeFiles) -> None:
    w = watcher(files)
    files.write("")  # truncated, the writer not done yet
    with capture_logs() as logs:
        for _ in range(4):
            assert w.check() is None
    assert files.reads == 1  # refused once for this state of the file, not at every acquisition
    assert [e["event"] for e in logs] == ["credential.rotation_refused"]
    files.write("secret-2")  # the writer finished
    assert value(w.check()) == "secret-2"


def test_a_new_mtime_alone_counts_and_unchanged_content_swaps_nothing(files: FakeFiles) -> None:
    w = watcher(files)
    files.content = "secret-1"
    files.state = (files.state[0] + 1, files.state[1], files.state[2])  # touched: same size, same inode
    assert w.check() is None
    assert files.reads == 1


class FakeVault:
    def __init__(self) -> None:
        self.value = "v1"
        self.fail: IdentityProviderError | None = None
        self.fetches = 0

    async def __call__(self) -> CredentialSecrets:
        self.fetches += 1
        if self.fail is not None:
            raise self.fail
        return CredentialSecrets(SecretStr(self.value))


async def test_vault_fetches_first_then_every_refresh_interval() -> None:
    clock, vault = FakeClock(), FakeVault()
    m = VaultMaterial("app", vault, refresh_s=3600, clock=clock)
    assert value(await m.refresh(stale=False)) == "v1"
    await clock.advance(3599)
    assert await m.refresh(stale=False) is None
    assert vault.fetches == 1
    vault.value = "v2"
    await clock.advance(1)
    assert value(await m.refresh(stale=False)) == "v2"
    assert vault.fetches == 2


async def test_vault_refetches_when_stale_but_not_more_often_than_the_minimum() -> None:
    clock, vault = FakeClock(), FakeVault()
    m = VaultMaterial("app", vault, refresh_s=3600, clock=clock)
    await m.refresh(stale=False)
    assert await m.refresh(stale=True) is None  # refused right after a fetch: the vault is not asked again
    assert vault.fetches == 1
    vault.value = "v2"
    await clock.advance(material.STALE_REFETCH_MIN_S)
    assert value(await m.refresh(stale=True)) == "v2"
    assert vault.fetches == 2


async def test_a_failed_fetch_keeps_the_secret_and_one_without_any_raises() -> None:
    clock, vault = FakeClock(), FakeVault()
    vault.fail = IdentityProviderError("vault unreachable", code="keyvault_unreachable")
    m = VaultMaterial("app", vault, refresh_s=3600, clock=clock)
    with pytest.raises(IdentityProviderError):
        await m.refresh(stale=False)
    vault.fail = None
    assert value(await m.refresh(stale=False)) == "v1"
    vault.fail = IdentityProviderError("vault unreachable", code="keyvault_unreachable")
    await clock.advance(3600)
    assert await m.refresh(stale=False) is None  # kept
    await clock.advance(material.STALE_REFETCH_MIN_S - 1)
    assert await m.refresh(stale=False) is None
    assert vault.fetches == 3  # retried after the stale interval, not at every acquisition
    await clock.advance(1)
    assert await m.refresh(stale=False) is None
    assert vault.fetches == 4
