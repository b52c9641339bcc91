"""Data: the built-in offline suite and loaders for public datasets in a data directory."""
