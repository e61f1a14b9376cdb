"""The teacher: API client, Groq emulator, rate limiting, the reference teacher, and generation on Ray."""
