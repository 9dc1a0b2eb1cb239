"""The web dashboard for the humans who oversee a research run (served by ``aar serve``
at ``/``): overview with live updates, leaderboard, PGR over time, forum, oversight."""

from aar.server.dashboard.routes import Dashboard, mount

__all__ = ["Dashboard", "mount"]
