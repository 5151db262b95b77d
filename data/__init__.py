"""The real data sets that prefkit ships (see README.md here); read them with prefkit.loaders."""
