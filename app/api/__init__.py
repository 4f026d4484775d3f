"""REST handlers and what they share."""
