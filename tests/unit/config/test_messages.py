"""Validation messages: the table, the field, and a fix read off the schema itself."""

from __future__ import annotations

from bearerd.config.messages import describe
from bearerd.config.schema import credential_kinds


def test_a_wrong_kind_lists_every_kind_there_is() -> None:
    message = describe(("credentials", "app"), "union_tag_invalid", "Input tag 'magic' found")
    assert message.startswith("[credentials.app]")
    assert message.endswith("kind must be one of " + ", ".join(credential_kinds()))
    assert credential_kinds() == [
        "client_secret",
        "certificate",
        "client_assertion",
        "managed_identity",
        "device_code",
        "azure_cli",
        "azure_developer_cli",
        "environment",
        "default",
    ]


def test_the_kind_tag_is_dropped_from_the_location_for_every_kind() -> None:
    for kind in credential_kinds():
        message = describe(("credentials", "app", kind, "timeout_s"), "greater_than", "Input should be greater than 0")
        assert message == "[credentials.app] timeout_s: Input should be greater than 0"


def test_a_credential_setting_on_a_route_says_where_it_belongs() -> None:
    message = describe(("routes", "api", "ca_file"), "extra_forbidden", "Extra inputs are not permitted")
    assert "[routes.api] ca_file" in message
    assert "setting of the route's credential" in message and "did you mean" not in message


def test_a_route_setting_on_a_credential_says_where_it_belongs() -> None:
    message = describe(("credentials", "app", "client_secret", "scopes"), "extra_forbidden", "Extra inputs")
    assert "setting of a route" in message


def test_a_setting_of_another_kind_names_that_kind() -> None:
    message = describe(("credentials", "app", "client_secret", "token_file"), "extra_forbidden", "Extra inputs")
    assert "token_file belongs to kind = 'client_assertion', not 'client_secret'" in message


def test_a_secret_written_inline_points_at_its_sources() -> None:
    message = describe(("cache", "password"), "extra_forbidden", "Extra inputs are not permitted")
    assert "password is not a setting: put the secret in password_file or password_env" in message


def test_a_typo_gets_the_closest_field_of_that_table_only() -> None:
    assert "did you mean 'listen'?" in describe(("server", "listn"), "extra_forbidden", "Extra")
    assert "did you mean 'path_prefix'?" in describe(("routes", "r", "match", "path_prefx"), "extra_forbidden", "x")
    assert "remove it" in describe(("server", "zzzzzz"), "extra_forbidden", "Extra")
