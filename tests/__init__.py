"""Test suite of smm-panel-bot."""
