"""massgen serve: a team behind an OpenAI-compatible endpoint, and the live dashboard."""
