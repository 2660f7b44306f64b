"""``massgen serve``: a team behind an OpenAI-compatible HTTP endpoint (docs/serve.md) on
aiohttp's own server, and the live dashboard (docs/dashboard.md). Imported only when a
command that serves runs."""
