"""Telegram app for reps."""
