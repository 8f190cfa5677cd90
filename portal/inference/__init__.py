"""Inference plumbing: which model a series goes to, the job lifecycle, and the results it leaves."""
