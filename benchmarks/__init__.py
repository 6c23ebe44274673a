"""`make bench`: performance figures, reported as ratios against a baseline of the same run."""
