"""Measuring a reward model on preference pairs.

- `metrics`: pair accuracy without ties and with ties (the tie-threshold search), bootstrap intervals;
- `runner`: a resumable scoring run over the published benchmarks, with its table and plot.
"""
