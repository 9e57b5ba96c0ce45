"""The Job controller (batch/v1): pods until completions succeed, retries with back-off, deadlines, TTL."""
