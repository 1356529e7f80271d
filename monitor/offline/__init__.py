"""Offline work: batch runs over video folders, benchmark evaluation, judge evaluation and calibration,
plots and reports."""
