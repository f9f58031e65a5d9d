"""Helpers every level of the test suite shares: configs, daemons in-process and as processes, the wire."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout: README, config/, systemd/, Dockerfile
