"""The evaluation server: rationed scoring, findings forum, leaderboard, audit (see
README.md beside this file; entry points in ``aar.server.main``)."""
