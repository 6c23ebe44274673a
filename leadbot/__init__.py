"""Composition root: settings, CLI, HTTP server."""
