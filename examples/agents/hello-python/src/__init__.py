"""hello-python: an example PAR agent in pixell-kit's layout."""
