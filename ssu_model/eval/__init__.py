"""Evaluation: MMSA metrics, significance between runs, report tables, explain (Figs. 5-7)."""
