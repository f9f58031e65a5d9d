"""The README's architecture tree names every module there is, and none that isn't."""

from __future__ import annotations

import re
from pathlib import Path

import bearerd
from support import REPO_ROOT


def test_architecture_tree_matches_the_package() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    tree = readme.split("## Architecture", 1)[1].split("```", 2)[1]
    listed: set[str] = set()
    folder = ""
    for line in tree.splitlines():
        match = re.match(r"^([│ ]*)[├└]── (\S+)", line)
        if match is None:
            continue
        depth, name = len(match.group(1)) // 4, match.group(2)
        if name.endswith("/"):
            folder = name
        elif name.endswith(".py"):
            listed.add(folder + name if depth == 1 else name)
    root = Path(bearerd.__file__).parent
    actual = {str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "__init__.py"}
    assert listed == actual, f"missing: {sorted(actual - listed)}; stale: {sorted(listed - actual)}"


def test_every_test_the_readme_names_exists() -> None:
    """The README backs its claims with test names: each must be a real file (and function)."""
    readme = (REPO_ROOT / "README.md").read_text()
    missing = []
    for ref in sorted(set(re.findall(r"tests/[\w/]+(?:\.py)?(?:::\w+)?", readme))):
        path, _, function = ref.partition("::")
        target = REPO_ROOT / path
        exists = target.exists()
        defined = exists and (not function or re.search(rf"^(?:async )?def {function}\b", target.read_text(), re.M))
        if not defined:
            missing.append(ref)
    assert not missing, missing
