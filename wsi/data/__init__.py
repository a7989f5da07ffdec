"""Slides, annotations, tissue masks and datasets."""
