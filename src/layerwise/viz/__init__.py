"""Figures: one function per figure, matplotlib object API only (no pyplot), headless."""
