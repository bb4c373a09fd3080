"""Stress testing (DESIGN §4): shocked states of the book and what they do to every pool."""
