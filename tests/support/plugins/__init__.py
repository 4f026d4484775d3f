"""Plugins used by the tests, loaded by import path like any third-party plugin."""
