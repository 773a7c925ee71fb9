"""Release building blocks: JSON-lines records, size-bounded shards, manifest and Croissant description."""
