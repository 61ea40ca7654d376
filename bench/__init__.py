"""Benchmarks, run by `make bench`, never by `make test`: figures are reported
as ratios against a baseline measured in the same run."""
