"""Small shared utilities (logging, files)."""
