"""Presentation: tables (text and HTML) and plots. Functions here only format; they compute nothing new."""
