"""Upstream media providers behind one protocol, and the catalog of models they serve."""
