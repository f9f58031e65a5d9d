"""The README's configuration reference is the schema's, generated: the two can't disagree."""

from __future__ import annotations

from pydantic import BaseModel

from bearerd.config.reference import BEGIN, END, render, splice
from bearerd.config.schema import CREDENTIAL_MODELS, CacheSettings, RouteSettings, ServerSettings
from support import REPO_ROOT


def test_readme_reference_matches_the_schema() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme
    assert splice(readme, render()) == readme, "run: python -m bearerd.config.reference --write README.md"


def test_every_setting_is_described() -> None:
    text = render()
    models: list[type[BaseModel]] = [ServerSettings, RouteSettings, CacheSettings, *CREDENTIAL_MODELS]
    for model in models:
        for name, info in model.model_fields.items():
            if name == "kind":
                continue
            assert info.description, f"{model.__name__}.{name} has no description"
            assert f"| `{name}` |" in text
