"""``massgen serve``: a team behind an OpenAI-compatible HTTP endpoint (docs/serve.md), on
aiohttp's own server. Imported only when the command runs."""
