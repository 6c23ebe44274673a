"""Web forms: `POST /forms/<key>` submissions → events (submission), HTTP (routes), config."""
