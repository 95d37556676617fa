"""Concept judges: tags (exact), embedding (offline), llm (OpenAI-compatible API), majority."""
