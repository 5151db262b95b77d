"""Each chapter's tour checks. Importing this package registers them all (see prefkit.tour)."""
