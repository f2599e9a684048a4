"""VBench: the results of a run, the paper's comparison table (`results`), and a quick look at four of
its five dimensions without VBench's own environment (`quick_look`)."""
