"""Charts of the team numbers (`crm.stats`), drawn on the server with matplotlib: SVG for the
web console, PNG for the bot. matplotlib is imported on first use, never at import time."""
